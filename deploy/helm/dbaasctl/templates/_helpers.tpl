{{/*
Names. Every object is named after the release so that several installations (one per
team, or a canary next to the stable one) can live in one cluster. Cluster-scoped objects
also carry the release namespace: two releases called "dbaasctl" in two namespaces must
not fight over one ClusterRole.
*/}}
{{- define "dbaasctl.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dbaasctl.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Prefix for cluster-scoped objects (ClusterRoles and their bindings). */}}
{{- define "dbaasctl.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "dbaasctl.fullname" .) | trunc 200 | trimSuffix "-" }}
{{- end }}

{{- define "dbaasctl.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: the only labels Services, the ServiceMonitor, the PodDisruptionBudget, the
NetworkPolicy and topology spread select on. They are immutable on a Deployment, so they never
include the version.
*/}}
{{- define "dbaasctl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dbaasctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Common labels. Note `app.kubernetes.io/managed-by: Helm`: the operator claims only Secrets
labelled `app.kubernetes.io/managed-by: dbaasctl`, so the DSN Secrets this chart creates can
never be mistaken for Database credentials it may repair or delete.
*/}}
{{- define "dbaasctl.labels" -}}
helm.sh/chart: {{ include "dbaasctl.chart" . }}
app.kubernetes.io/name: {{ include "dbaasctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dbaasctl
{{- end }}

{{/*
Pod labels: selector labels win over podLabels from values, so a values typo can never detach
the pods from their Service, PodDisruptionBudget or NetworkPolicy.
*/}}
{{- define "dbaasctl.podLabels" -}}
{{- $selector := include "dbaasctl.selectorLabels" . | fromYaml }}
{{- $common := include "dbaasctl.labels" . | fromYaml }}
{{- toYaml (merge (dict) $selector (deepCopy (.Values.podLabels | default dict)) $common) }}
{{- end }}

{{/* Labels of the metrics Service that the ServiceMonitor selects it by. */}}
{{- define "dbaasctl.metricsServiceSelector" -}}
app.kubernetes.io/name: {{ include "dbaasctl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: metrics
{{- end }}

{{- define "dbaasctl.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dbaasctl.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dbaasctl.configName" -}}
{{- default (include "dbaasctl.fullname" .) .Values.operatorConfig.name }}
{{- end }}

{{- define "dbaasctl.leaseName" -}}
{{- default (printf "%s-leader" (include "dbaasctl.fullname" .)) .Values.operator.leaderElection.leaseName | trunc 253 }}
{{- end }}

{{/* The Secret holding DSNs given inline in values (never a ConfigMap, never the OperatorConfig). */}}
{{- define "dbaasctl.dsnSecretName" -}}
{{- printf "%s-dsn" (include "dbaasctl.fullname" .) }}
{{- end }}

{{- define "dbaasctl.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* True (non-empty) when at least one endpoint carries an inline DSN. */}}
{{- define "dbaasctl.hasInlineDsn" -}}
{{- range .Values.operatorConfig.dbms }}
{{- range .endpoints }}
{{- if .dsn }}yes{{ end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Namespaced rules the operator needs wherever Databases live. Rendered into the ClusterRole when
the operator watches every namespace, or into one Role per watched namespace otherwise.
*/}}
{{- define "dbaasctl.databaseRules" -}}
# Write verbs are exactly those the operator uses (merge patches, never PUT); the e2e suite runs
# the operator with these rules and proves each one is needed.
# Databases: read, and patch metadata (finalizer, consumed rotate annotation).
- apiGroups: ["dbaasctl.io"]
  resources: ["databases"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["dbaasctl.io"]
  resources: ["databases/status"]
  verbs: ["patch"]
# Checked by the OwnerReferencesPermissionEnforcement admission plugin (on in OpenShift and some
# hardened clusters): the credential Secret's ownerReference sets blockOwnerDeletion.
- apiGroups: ["dbaasctl.io"]
  resources: ["databases/finalizers"]
  verbs: ["update"]
# The credential Secrets of Databases: created, repaired on drift, rotated, deleted.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Events are written through events.k8s.io/v1 (served since 1.19). The operator's core/v1
# fallback is for clusters without it, so core "events" is deliberately not granted: the two
# APIs store the same objects, and `kubectl describe` shows them either way.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.operator.rolloutWorkloads }}
# operator.rolloutWorkloads: after a rotation, workloads annotated dbaasctl.io/rollout-on-rotation
# get their pod template annotated (a rolling restart).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["list", "patch"]
{{- end }}
{{- end }}

{{/* Topology spread constraints with the pod selector filled in when left out. */}}
{{- define "dbaasctl.topologySpread" -}}
{{- $root := . }}
{{- range .Values.topologySpreadConstraints }}
{{- $c := deepCopy . }}
{{- if not $c.labelSelector }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "dbaasctl.selectorLabels" $root | fromYaml)) }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end }}
