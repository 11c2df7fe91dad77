# Sourced by the cluster benches: a scratch directory removed at exit, the broker processes
# started into `pids` (killed with SIGKILL by stop_all, and at exit), and free loopback ports.
work=$(mktemp -d)
pids=()
stop_all() {
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
