#!/usr/bin/env bash
# Installs, upgrades, boots and removes the crossdock .deb in a throwaway root; tests/packaging.rs
# runs it (as root) and asserts on what it records.
#
#   tests/packaging/throwaway-root.sh DEB RESULTS_DIR [probe|agent]
#
# The throwaway root is an overlay whose lower layer is this machine's own root file system and whose
# upper layer is a tmpfs, all inside a private mount namespace: dpkg and the maintainer scripts see a
# complete Debian system (dependencies installed, deb-systemd-helper, systemd-sysusers), every change
# they make lands in the tmpfs, and the host is never touched. When the namespace's last process
# exits, the mounts and everything written go with it.
#
# Steps (each command's output goes to RESULTS_DIR/<step>.out, its exit status to <step>.rc):
#   1. `dpkg --root` install (maintainer scripts run chrooted, as in an image build: no systemd).
#   2. `systemd-analyze verify` of the installed units, inside the root.
#   3. Upgrade to a repacked copy with a higher version, after a local edit of the conffile.
#   4. Boot the root with systemd-nspawn (own network namespace) and start the installed unit.
#      probe (default): with tests/packaging/sandbox-probe.py as its main process, which checks the
#        sandbox from inside; a check unit records what systemd and the kernel say, reloads, stops and
#        exits the container.
#      agent: the installed crossdock binary with Debian's dockerd (docker.service, containerd) in the
#        container, provider none, a veth as the external interface; tests/packaging/agent-check.sh
#        then drives it through status, reload, a Docker restart, stop, start and --cleanup.
#   5. Remove, then purge, and list whatever is left that belongs to crossdock.
set -euo pipefail

if [ -z "${CROSSDOCK_PRIVATE_MOUNTS:-}" ]; then
  exec env CROSSDOCK_PRIVATE_MOUNTS=1 unshare --mount --propagation private -- "$0" "$@"
fi

deb=$(readlink -f "${1:?usage: throwaway-root.sh DEB RESULTS_DIR}")
res=$(readlink -f "${2:?usage: throwaway-root.sh DEB RESULTS_DIR}")
mode=${3:-probe}
case "$mode" in probe|agent) ;; *) echo "throwaway-root.sh: mode must be probe or agent" >&2; exit 2 ;; esac
here=$(dirname "$(readlink -f "$0")")
mkdir -p "$res"

work=$(mktemp -d /tmp/crossdock-throwaway.XXXXXX)
cleanup() {
  # The mounts vanish with the namespace; only the empty mount point lives on the host.
  umount -R "$work" 2>/dev/null || umount -l "$work" 2>/dev/null || true
  rmdir "$work" 2>/dev/null || true
}
trap cleanup EXIT

mount -t tmpfs -o size=1g,mode=0755 tmpfs "$work"
mkdir -p "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/upper,workdir=$work/work" "$work/root"
R=$work/root
# systemd-nspawn keeps its locks and bookkeeping under /run: give it a private tmpfs.
mount -t tmpfs -o mode=0755 tmpfs /run

step() {
  local name=$1; shift
  set +e
  "$@" >"$res/$name.out" 2>&1
  echo $? >"$res/$name.rc"
  set -e
}
api_mounts() { mount --bind /dev "$R/dev"; mount -t proc proc "$R/proc"; }
api_umounts() { umount "$R/proc"; umount "$R/dev"; }
query() { dpkg-query --root="$R" -W -f='${db:Status-Abbrev} ${Version}\n' crossdock; }

export DEBIAN_FRONTEND=noninteractive
api_mounts

# 1. Fresh install.
step install dpkg --root="$R" -i "$deb"
step installed-status query
step installed-files dpkg --root="$R" -L crossdock
# shellcheck disable=SC2016 # ${Conffiles} is dpkg-query's format, not a shell expansion
step installed-conffiles dpkg-query --root="$R" -W -f='${Conffiles}\n' crossdock
step installed-group chroot "$R" getent group crossdock
step installed-config-mode stat -c '%a %U %G' "$R/etc/crossdock/agent.toml"
step installed-enablement find "$R/etc/systemd/system" -name 'crossdock*'
step installed-runtime-dir ls -d "$R/run/crossdock"

# 2. verify, inside the root where /usr/bin/crossdock, /bin/kill and the man page exist.
step verify chroot "$R" systemd-analyze verify crossdock-agent.service
step verify-init chroot "$R" systemd-analyze verify crossdock-init.service

# 3. Upgrade over a local edit of the conffile.
echo '# local edit made by the packaging test' >>"$R/etc/crossdock/agent.toml"
rm -rf "$work/repack" && dpkg-deb -R "$deb" "$work/repack"
sed -i -E 's/^Version: (.*)$/Version: \1+upgradetest/' "$work/repack/DEBIAN/control"
dpkg-deb -b "$work/repack" "$work/upgrade.deb" >/dev/null
step upgrade dpkg --root="$R" -i "$work/upgrade.deb"
step upgraded-status query
step upgraded-config tail -n 1 "$R/etc/crossdock/agent.toml"

# 4. Boot the root and start the installed unit (around the probe, or the real agent).
api_umounts
if command -v systemd-nspawn >/dev/null; then
  sd=$R/etc/systemd/system
  mkdir -p "$R/usr/local/libexec"
  # systemd-nspawn itself mounts /proc/sys read-only and /proc/sys/net writable, which is what the unit
  # asks for: undo that split before the unit starts, so that what the probe sees is the unit's own
  # doing, as on a host. (Only the unit and the check run after this; systemd-sysctl ran before.)
  cat >"$sd/cdtest-unsplit-proc.service" <<'EOT'
[Unit]
Before=docker.service crossdock-agent.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/libexec/cdtest-unsplit-proc
EOT
  cat >"$R/usr/local/libexec/cdtest-unsplit-proc" <<'EOT'
#!/bin/sh
set -e
grep ' /proc/sys' /proc/self/mountinfo >/results/proc-sys-mounts-nspawn
while grep -q ' /proc/sys/net ' /proc/self/mountinfo; do umount /proc/sys/net; done
mount -o remount,bind,rw /proc/sys
grep ' /proc/sys' /proc/self/mountinfo >/results/proc-sys-mounts-unsplit
EOT
  chmod 0755 "$R/usr/local/libexec/cdtest-unsplit-proc"
  if [ "$mode" = probe ]; then
    # No Docker daemon in the container: a socket unit stands in for /var/run/docker.sock.
    ln -sf /dev/null "$sd/docker.service"; ln -sf /dev/null "$sd/docker.socket"
    ln -sf /dev/null "$sd/containerd.service"
    install -m 0755 "$here/sandbox-probe.py" "$R/usr/local/libexec/cdtest-probe"
    cat >"$sd/cdtest-docker.socket" <<'EOT'
[Socket]
ListenStream=/run/docker.sock
SocketMode=0660
EOT
    cat >"$sd/cdtest-docker.service" <<'EOT'
[Service]
ExecStart=/bin/true
EOT
    cat >"$sd/cdtest-check.service" <<'EOT'
[Unit]
Wants=cdtest-unsplit-proc.service cdtest-net.service crossdock-agent.service
After=cdtest-unsplit-proc.service cdtest-net.service crossdock-agent.service
[Service]
Type=oneshot
StandardOutput=append:/results/check.log
StandardError=append:/results/check.log
ExecStart=/usr/local/libexec/cdtest-check
EOT
    mkdir -p "$sd/crossdock-agent.service.d"
    cat >"$sd/crossdock-agent.service.d/50-probe.conf" <<'EOT'
# Test wiring only: the probe replaces the agent binary; everything else is the installed unit.
[Unit]
Wants=cdtest-docker.socket
After=cdtest-docker.socket
[Service]
ExecStart=
ExecStart=/usr/local/libexec/cdtest-probe
StandardOutput=append:/results/probe.log
StandardError=append:/results/probe.log
EOT
    cat >"$R/usr/local/libexec/cdtest-check" <<'EOT'
#!/bin/sh
# Runs after crossdock-agent.service has reported ready (or failed); records, reloads, stops, exits.
r=/results
props="-p ActiveState -p SubState -p Result -p NRestarts -p WatchdogUSec -p StatusText -p NotifyAccess -p Type"
systemctl show crossdock-agent $props >$r/state-started
iptables-save >$r/iptables-save 2>&1
cat /proc/sys/net/ipv4/ip_forward >$r/ip-forward
stat -c '%n %a %U %G %F' /run/crossdock /run/crossdock/agent.sock >$r/socket-stat 2>&1
systemctl reload crossdock-agent; echo $? >$r/reload.rc
i=0
until grep -q 'reloaded on SIGHUP' $r/probe.log || [ $i -ge 200 ]; do i=$((i + 1)); sleep 0.05; done
systemctl show crossdock-agent -p ActiveState >$r/state-reloaded
systemctl stop crossdock-agent
systemctl show crossdock-agent -p ActiveState -p Result >$r/state-stopped
echo done >$r/check-done
systemctl exit 0
EOT
  else
    install -m 0755 "$here/agent-check.sh" "$R/usr/local/libexec/cdtest-check"
    # The real agent next to the real Docker: Debian's docker.service, docker.socket and
    # containerd.service as installed on this machine, started inside the container (own network
    # namespace, own /run, a data root of its own in the tmpfs layer). daemon.json gives the bridge
    # this host's subnet, as the cloud-init user data does.
    mkdir -p "$R/etc/docker"
    cat >"$R/etc/docker/daemon.json" <<'EOT'
{"bip": "10.250.1.1/24", "data-root": "/var/lib/cdtest-docker", "storage-driver": "vfs"}
EOT
    cat >"$R/etc/crossdock/agent.toml" <<'EOT'
cluster_cidrs = ["10.250.0.0/16"]
EOT
    chroot "$R" useradd --system --no-create-home --groups crossdock cdtest
    # The external interface (a veth towards nowhere with the default route), with forwarding off
    # and net.ipv4.ip_forward=0, as on a fresh instance; Docker turns ip_forward on by itself.
    cat >"$sd/cdtest-net.service" <<'EOT'
[Unit]
Before=docker.service crossdock-agent.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/sysctl -q -w net.ipv4.ip_forward=0
ExecStart=/usr/sbin/ip link add eth0 type veth peer name eth0peer
ExecStart=/usr/sbin/ip address add 192.168.1.10/24 dev eth0
ExecStart=/usr/sbin/ip link set eth0peer up
ExecStart=/usr/sbin/ip link set eth0 up
ExecStart=/usr/sbin/ip route add default via 192.168.1.1 dev eth0 onlink
EOT
    # After Docker has turned ip_forward on (which turns forwarding on for every interface), switch
    # it off on eth0 again before the agent starts: the agent must be the one that turns it on.
    cat >"$sd/cdtest-eth0-off.service" <<'EOT'
[Unit]
After=docker.service cdtest-net.service
Before=crossdock-agent.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/sysctl -q -w net.ipv4.conf.eth0.forwarding=0
EOT
    # The check wants Docker and the agent (neither is enabled); the agent is ordered after Docker
    # by its own After=, not by anything here.
    cat >"$sd/cdtest-check.service" <<'EOT'
[Unit]
Wants=cdtest-unsplit-proc.service cdtest-net.service cdtest-eth0-off.service docker.service crossdock-agent.service
After=cdtest-unsplit-proc.service cdtest-net.service cdtest-eth0-off.service crossdock-agent.service
[Service]
Type=oneshot
StandardOutput=append:/results/check.log
StandardError=append:/results/check.log
ExecStart=/usr/local/libexec/cdtest-check
EOT
  fi
  chmod 0755 "$R/usr/local/libexec/cdtest-check"
  systemd-id128 new >"$R/etc/machine-id"
  step boot timeout 180 systemd-nspawn --quiet --register=no --keep-unit --link-journal=no \
    --machine="cdtest-$$" --directory="$R" --private-network --bind="$res:/results" \
    --boot -- systemd.unit=cdtest-check.service
  rm -rf "$sd/crossdock-agent.service.d" "$sd"/cdtest-* "$R/usr/local/libexec"/cdtest-* \
    "$sd/docker.service" "$sd/docker.socket" "$sd/containerd.service"
else
  echo "systemd-nspawn not installed (Debian package systemd-container)" >"$res/boot.skipped"
fi
api_mounts

# 5. Remove, then purge.
step remove dpkg --root="$R" -r crossdock
step removed-status query
step removed-config ls "$R/etc/crossdock/agent.toml"
step removed-binary ls "$R/usr/bin/crossdock"
step purge dpkg --root="$R" -P crossdock
step purged-status query
# Anything named after crossdock still in the upper layer was created and not removed. The journal
# and logs of the boot are not the package's, nor is man's page cache (filled by `verify`).
step leftovers sh -c "cd '$work/upper' && find . -path '*crossdock*' ! -path './var/log/*' ! -path './var/cache/man/*' | sort"
api_umounts
echo finished >"$res/finished"
