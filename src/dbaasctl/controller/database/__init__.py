"""The Database reconciler: observe → decide → act → record, one key (`namespace/name`) per pass.

- observe (`observe.py`): the Database from the cache (or the fresher copy our last write returned), our
  Secret (cache, a miss confirmed by a GET), admission (strict until create was called), and what this
  process holds in memory (credentials not yet stored).
- decide (`decide.py`): a pure function of that and the time → one step: Create, Rotate(why),
  RepairSecret, Adopt, RollOut, Retire, Retired, Queued, RepairLabels, RemoveAnnotation, Delete, Release,
  Blocked(reason), Wait(until), Nothing. No I/O; the table tests walk every row below.
- act (`act.py`): performs the step; a step that moved the object on (finalizer, adopt, annotation) is
  followed by another observe/decide in the same pass, at most MAX_STEPS.
- record: the moment a DBMS call succeeds its effect is persisted before anything else, and one status
  writer runs on every exit (Ready with the current observedGeneration in every condition); the metric
  gauges are derived from that final status.

Writes come in two kinds (`writes.py`). *Fences* precede a side effect and carry the resourceVersion we
decided on: the finalizer, then the intent marker `status.pendingOperation` (create or rotate). A 409
there costs nothing; the pass decides again from the fresh object. *Records* follow a side effect and
cannot fail on a concurrent edit of spec or metadata: status patches carry no resourceVersion (we are its
only writer), the Secret write re-reads the Secret, never the Database; every transient failure (409,
429, 5xx, connection reset, timeout) is retried in place with a fresh GET, bounded and jittered.

Exactly once: the rules, by what the pass finds.

| found                                                      | step                                           |
|------------------------------------------------------------|------------------------------------------------|
| deleting, no finalizer                                     | nothing                                        |
| deleting, deletionPolicy Retain                            | release the Secret, drop the finalizer         |
| deleting, nothing may exist (no provisionedAt, no intent,  | delete our Secret (if any), drop the finalizer |
|   no credentials issued)                                   |   — no procedure call                          |
| deleting, the database may exist                           | Delete (fenced by a fresh GET); on success     |
|                                                            |   provisionedAt is cleared at once, so a later |
|                                                            |   pass only releases                           |
| a Secret at the name that is not ours                      | Blocked SecretConflict, never overwritten      |
| credentials held in memory (issued, not yet in the Secret) | RepairSecret: write them, then status — before |
|                                                            |   any new rotate                               |
| our Secret's credential generation > status's              | Adopt: record it (provisionedAt too), no call  |
| not provisioned, intent "create" set, no evidence          | no success was ever seen (the operator stopped,|
|                                                            |   the link broke, the call timed out): Create  |
|                                                            |   again — create procedures must be idempotent |
|                                                            |   (the samples are), and only a re-run can     |
|                                                            |   complete a create cut off half-way           |
| not provisioned, no intent                                 | admission (strict), then Create                |
| provisioned, roll-out of workloads on, rolledOutGeneration| RollOut: annotate the opted-in pod templates,  |
|   behind credentialGeneration (the operator stopped       |   then record rolledOutGeneration; a failure is|
|   between the rotation's record and the roll-out), no     |   an Event and another try in ROLLOUT_RETRY s  |
|   rotation asked for, retire not due                       |                                                |
| provisioned: rotate annotation, Secret missing or edited,  | Rotate(why); "true" is taken off once the new  |
|   issued credentials not stored (intent left, Secret       |   credentials are in the Secret, before the    |
|   generation behind status), interval elapsed              |   record (if that fails: rotationToken "true"  |
|                                                            |   recorded, RemoveAnnotation takes it off)     |
| two-phase (class declares retire), previous credentials    |                                                |
|   pending (`previousCredentialsRetireAt` or intent retire):|                                                |
|   retire seen succeeding by this process, or intent retire | Retired: delete the previous Secret (if any),  |
|   and the previous Secret gone                             |   clear the bookkeeping — no call              |
|   the class no longer declares retire                      | Retired without a call (left to the DBA)       |
|   due, or intent retire (outcome unknown)                  | Retire (idempotent: an unseen outcome re-runs) |
|   not due, a rotation asked for                            | Queued until due: it runs once, after retire   |
| provisioned, all well                                      | Ready=True; Wait until the next rotation       |

After a create or rotate call succeeds: the credentials are held in memory first, then written to the
Secret stamped with their generation (`dbaasctl.io/credential-generation`), then a one-shot rotate
annotation ("true") is taken off (fenced; `rotate_request.py`), then status records credentialGeneration,
provisionedAt / lastRotationTime, rotationToken (a value, or "true" if it could not be taken off) and
clears the intent. So:
- the Secret write fails (API down, template error): status still records provisionedAt (from now on only
  rotate issues credentials) and keeps the intent; Ready=False SecretWriteFailed/SecretTemplateError; the
  held credentials are written on the next pass, no new call. Lost with a restart, the intent that
  remains makes the next pass rotate (the Secret may hold credentials the DBMS no longer accepts).
- the status write fails: the Secret's generation is ahead of status; the next pass adopts it.
- two-phase rotation: the data of the Secret being superseded is held with the new credentials and
  written to `<secretName>-previous` before the new Secret; status then records
  `previousCredentialsRetireAt` (now + gracePeriod). An adopted generation with a previous Secret gets
  its retire time at adoption. Retire is recorded by deleting the previous Secret, then clearing
  status; a success whose record failed is held in memory and never called again in this process.
- a call that failed with a definite DBMS error (the procedure raised, does not exist, wrong
  parameters) had no effect: the intent is cleared (spec.endpoint/params become editable again) and
  the call is retried with backoff from DBMS_BACKOFF_BASE seconds. Any other failure (timeout, broken
  connection, unreadable result) may have had one and leaves the intent for the rules above.
- delete is not fenced by an intent: a delete whose success could not be recorded runs again; delete
  procedures must be idempotent (the samples are: DROP ... IF EXISTS).

So create runs again only when no success of it was ever seen, and never after one was: not after a
user's edit during the call, not after a failed status or Secret write, not after a failed rotation.

Admission failures are Blocked results counted as errors (`Result(failed=True)`) and not requeued: a
change to the Database, class, config or namespace brings the key back. A worker never waits for the
configuration: before it is applied the pass returns RequeueAfter.
"""

from dbaasctl.controller.database.decide import decide
from dbaasctl.controller.database.metrics import DatabaseMetrics
from dbaasctl.controller.database.reconciler import DatabaseReconciler, Dependencies, Recorder
from dbaasctl.controller.database.writes import DATABASES

__all__ = ["DATABASES", "DatabaseMetrics", "DatabaseReconciler", "Dependencies", "Recorder", "decide"]
