#!/bin/sh
# The check of tests/packaging/throwaway-root.sh's agent mode, run inside the booted container once
# crossdock-agent.service has started (or failed): it drives the installed agent, under the installed
# unit, next to a real dockerd, and records what systemd, the kernel and the agent say in /results
# for tests/packaging.rs. It runs as the container's root, outside the unit's sandbox.
#
# Files: <name>.out and <name>.rc for commands; state-<phase> (systemctl show); iptables-<phase>
# (iptables-save); <name>.rc alone for waits (0 = the condition came true before its deadline).
# Waits poll with a deadline; nothing here sleeps to let something happen.
r=/results
sock=/run/crossdock/agent.sock

record() { name=$1; shift; "$@" >"$r/$name.out" 2>&1; echo $? >"$r/$name.rc"; }
state() {
  systemctl show crossdock-agent -p ActiveState -p SubState -p Result -p NRestarts -p WatchdogUSec \
    -p StatusText -p NotifyAccess -p Type -p MainPID >"$r/state-$1"
}
# wait_for NAME SECONDS COMMAND...: polls COMMAND every 0.1 s until it succeeds or SECONDS pass.
# After one wait has failed the later ones fail at once, so a broken agent costs one deadline, not
# all of them (the container's own bound is 180 s).
failed=
wait_for() {
  name=$1 end=$(($(date +%s) + $2)); shift 2
  until [ -z "$failed" ] && "$@" >/dev/null 2>&1; do
    if [ -n "$failed" ] || [ "$(date +%s)" -ge "$end" ]; then
      echo 1 >"$r/$name.rc"; failed=$name; return 1
    fi
    sleep 0.1
  done
  echo 0 >"$r/$name.rc"
}
healthy() { crossdock status; }
saved_has() { iptables-save | grep -q -e "$1"; }
get() { curl -sS --max-time 5 --unix-socket "$sock" -w '\nHTTP %{http_code}\n' "http://agent$1"; }
# Host passes run because Docker (re)connected, from /metrics.
reconnect_passes() {
  curl -sS --max-time 5 --unix-socket "$sock" http://agent/metrics |
    awk '/^crossdock_reconcile_total\{trigger="docker_reconnect"/ { n += $2 } END { print n + 0 }'
}
more_reconnects_than() { [ "$(reconnect_passes)" -gt "$1" ]; }
forwarding() { cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/eth0/forwarding | tr '\n' ' '; }

# 1. Started: systemd's view as soon as the start job is done (READY=1 came from the agent), then
#    the first host pass.
state started
stat -c '%n %a %U %G %F' /run/crossdock "$sock" >"$r/socket-stat" 2>&1
wait_for healthy-started 30 healthy
record healthz get /healthz
record status-started crossdock status --json
record status-member runuser -u cdtest -- crossdock status
record status-stranger runuser -u nobody -- crossdock status
forwarding >"$r/forwarding-started"
iptables-save >"$r/iptables-started" 2>&1

# 2. Reload: a second cluster range (applied by a reload) and JSON logs (applied only by a restart).
cat >/etc/crossdock/agent.toml <<'EOT'
cluster_cidrs = ["10.250.0.0/16", "10.251.0.0/16"]
log_format = "json"
EOT
record reload systemctl reload crossdock-agent
wait_for reload-applied 30 saved_has '-s 10.251.0.0/16 -d 10.250.1.0/24 .*crossdock:cluster-to-containers'
state reloaded
record status-reloaded crossdock status --json
iptables-save >"$r/iptables-reloaded" 2>&1

# 3. Docker restarts under the running agent: the agent must stay up (no Requires=/BindsTo= on
#    docker.service), notice the daemon coming back and check the host again.
before=$(reconnect_passes)
echo "$before" >"$r/reconnect-passes-before"
record docker-restart systemctl restart docker.service
wait_for docker-reconnected 60 more_reconnects_than "$before"
wait_for healthy-after-docker 30 healthy
state after-docker
iptables-save >"$r/iptables-after-docker" 2>&1

# 4. Stop: a clean exit that leaves the rules and the sysctls in place.
systemctl stop crossdock-agent
state stopped
iptables-save >"$r/iptables-stopped" 2>&1
forwarding >"$r/forwarding-stopped"
ls -d /run/crossdock >"$r/runtime-dir-stopped" 2>&1

# 5. Start again: the new process adopts what is there (no writes) and logs as JSON now.
record start systemctl start crossdock-agent
wait_for healthy-restarted 30 healthy
state restarted
record status-restarted crossdock status --json
pid=$(systemctl show -p MainPID --value crossdock-agent)
journalctl -o cat _PID="$pid" >"$r/journal-restarted" 2>&1

# 6. Decommission: stop, then --cleanup removes the agent's rules and nothing of Docker's.
systemctl stop crossdock-agent
state stopped-again
record cleanup crossdock agent --cleanup
iptables-save >"$r/iptables-cleaned" 2>&1

journalctl -u crossdock-agent --no-pager >"$r/agent-journal" 2>&1
journalctl -u docker.service -u containerd.service --no-pager >"$r/docker-journal" 2>&1
echo "done" >"$r/check-done"
systemctl exit 0
