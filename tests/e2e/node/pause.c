/* The pod sandbox's only process: holds the pod's namespaces until the kubelet stops the sandbox.
 * Built static so the image needs nothing else (no registry serves the upstream pause image here). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void done(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  signal(SIGINT, done);
  signal(SIGTERM, done);
  signal(SIGCHLD, reap);
  for (;;) pause();
}
