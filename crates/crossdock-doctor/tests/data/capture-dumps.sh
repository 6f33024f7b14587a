#!/usr/bin/env bash
# Captures the `iptables-save -c` dumps the parser tests read: a real dockerd (Debian 12's 20.10 and the
# cached 28.x) in a private network namespace with one running container, before and after crossdock-style
# rules are added by hand. Run as root from this directory; everything it creates is removed on exit.
# Usage: capture-dumps.sh 20|28
set -euo pipefail
ver=$1
ns=cddoc-cap$ver
peer=cddoc-cap${ver}p
dir=$(mktemp -d /tmp/cddoc-cap.XXXXXX)
out=$(cd "$(dirname "$0")" && pwd)
if [ "$ver" = 28 ]; then
  root=/var/cache/crossdock/docker28/root
  dockerd=$root/usr/sbin/dockerd
  export PATH=$root/usr/sbin:$root/usr/bin:$PATH
else
  dockerd=/usr/sbin/dockerd
fi
cleanup() {
  set +e
  if [ -s "$dir/pid" ]; then
    pid=$(cat "$dir/pid"); kill "$pid"
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  ip netns del "$ns" 2>/dev/null; ip netns del "$peer" 2>/dev/null
  trap - ERR
  for m in $(awk -v d="$dir" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  rm -rf "$dir"
}
trap cleanup EXIT
trap '[ -f "$dir/log" ] && cat "$dir/log" >&2' ERR
echo {} > "$dir/daemon.json"
ip netns add "$ns"; ip netns add "$peer"
ip -n "$ns" link set lo up
ip link add eth0 netns "$ns" type veth peer name vsw netns "$peer"
ip -n "$ns" addr add 192.168.1.11/24 dev eth0; ip -n "$ns" link set eth0 up
ip -n "$peer" addr add 192.168.1.253/24 dev vsw; ip -n "$peer" link set vsw up
ip -n "$ns" route add default via 192.168.1.253
nsenter --net=/run/netns/"$ns" "$dockerd" --data-root "$dir/data" --exec-root "$dir/exec" \
  --pidfile "$dir/pid" --config-file "$dir/daemon.json" -H "unix://$dir/docker.sock" --bip 10.1.0.1/24 \
  --containerd-namespace cddoc$ver --containerd-plugins-namespace cddoc${ver}p >"$dir/log" 2>&1 &
for _ in $(seq 300); do docker -H "unix://$dir/docker.sock" info >/dev/null 2>&1 && break; sleep 0.1; done
docker -H "unix://$dir/docker.sock" import /var/cache/crossdock/busybox-rootfs.tar busybox:lab >/dev/null
docker -H "unix://$dir/docker.sock" run -d --name c1 busybox:lab sleep 3600 >/dev/null
ipt() { nsenter --net=/run/netns/"$ns" "$@"; }
ipt iptables-save -c > "$out/docker$ver-plain.iptables-save"
# crossdock's rules as crossdock-hostnet's desired_rules() renders them for cluster 10.0.0.0/8, local
# subnet 10.1.0.0/24, bridge docker0 (applied here by hand so the dump shows how iptables prints them back)
ipt iptables -N CROSSDOCK-FORWARD
ipt iptables -A CROSSDOCK-FORWARD -s 10.0.0.0/8 -d 10.1.0.0/24 -o docker0 -m comment --comment crossdock:cluster-to-containers -j ACCEPT
ipt iptables -I DOCKER-USER -m comment --comment crossdock:jump -j CROSSDOCK-FORWARD
ipt iptables -t nat -N CROSSDOCK-POSTROUTING
ipt iptables -t nat -A CROSSDOCK-POSTROUTING -s 10.1.0.0/24 -d 10.0.0.0/8 -m comment --comment crossdock:keep-container-source -j ACCEPT
ipt iptables -t nat -I POSTROUTING -m comment --comment crossdock:jump -j CROSSDOCK-POSTROUTING
ipt iptables -t raw -N CROSSDOCK-PREROUTING
ipt iptables -t raw -A CROSSDOCK-PREROUTING -s 10.0.0.0/8 -d 10.1.0.0/24 ! -i docker0 -m comment --comment crossdock:cluster-before-docker-raw-drop -j ACCEPT
ipt iptables -t raw -I PREROUTING -m comment --comment crossdock:jump -j CROSSDOCK-PREROUTING
ipt busybox ping -c1 -W1 10.1.0.2 >/dev/null || true
ipt iptables-save -c > "$out/docker$ver-crossdock.iptables-save"
echo "captured $out/docker$ver-*.iptables-save ($("$dockerd" --version))"
