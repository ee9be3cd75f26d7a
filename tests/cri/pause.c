/* The sandbox ("pause") process of the CRI tests' pods: holds the pod's namespaces and does
 * nothing else until it is told to stop, like the kubelet's pause image. Built static by
 * `cargo xtask pause-image` (xtask/src/image/pause.rs) into an OCI archive containerd imports. */
#include <signal.h>
#include <unistd.h>

static void quit(int sig) {
    (void)sig;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, quit);
    signal(SIGINT, quit);
    for (;;)
        pause();
}
