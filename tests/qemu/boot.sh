#!/usr/bin/env bash
# Boots a tiny Linux in qemu with the static nitro as /init and checks, on
# the serial console, that the system comes up and goes down in order.
#
#   tests/qemu/boot.sh NITRO NITROCTL WORKDIR SCENARIO
#
# SCENARIO: shutdown (SIGTERM first, which the real pid 1 ignores, then
# nitroctl Shutdown), reboot (nitroctl Reboot), cad (kill -INT 1, what the
# kernel sends on Ctrl-Alt-Delete) or single (booted with `single` on the
# kernel command line: /etc/nitro.single, then nitroctl Shutdown) or
# reincarnate (nitroctl Shutdown with a SYS/reincarnate, which takes over
# instead of SYS/final), halt (`halt -f`: the kernel powers off at once,
# nothing is stopped) or cgroups (SYS/setup mounts /sys, nitro mounts
# cgroup2: a service over its memory-max is OOM-killed alone and says so, a
# fork bomb stops at pids-max; then nitroctl Shutdown).
# Needs qemu-system-x86_64, busybox (static), cpio and a kernel image: the
# first of $NITRO_TEST_KERNEL, WORKDIR/vmlinuz, or one extracted from
# Debian's linux-image package fetched with `apt-get download`.
set -euo pipefail

nitro=$1 nitroctl=$2 work=$3 scenario=$4
mkdir -p "$work"
work=$(cd "$work" && pwd)

kernel=${NITRO_TEST_KERNEL:-$work/vmlinuz}
if [ ! -e "$kernel" ]; then
	pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
	(cd "$work" && apt-get download "$pkg" >/dev/null)
	dpkg-deb --fsys-tarfile "$work"/"$pkg"_*.deb | tar -x -C "$work" --wildcards './boot/vmlinuz-*'
	mv "$work"/boot/vmlinuz-* "$kernel"
	rm -rf "$work"/boot "$work"/"$pkg"_*.deb
fi

root=$work/root-$scenario
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc/nitro,proc,sys,dev,run,tmp}
cp "$nitro" "$root"/init
cp "$nitroctl" "$root"/bin/nitroctl
ln -s nitroctl "$root"/bin/halt
cp "$(command -v busybox)" "$root"/bin/busybox
for applet in sh echo cat sleep mount kill ls mkdir seq poweroff grep; do
	ln -s busybox "$root"/bin/$applet
done

sv=$root/etc/nitro
cmdline="console=ttyS0 panic=-1 loglevel=3"
if [ "$scenario" = single ]; then
	sv=$root/etc/nitro.single
	cmdline="$cmdline single"
fi
script() { # script PATH BODY: an executable shell script
	mkdir -p "$(dirname "$1")"
	printf '#!/bin/sh\n%s\n' "$2" >"$1"
	chmod +x "$1"
}
sys_mounts='mount -t proc proc /proc'
[ "$scenario" = cgroups ] && sys_mounts="$sys_mounts; mount -t sysfs sysfs /sys"
script "$sv"/SYS/setup "$sys_mounts"'; echo "@@ SYS/setup ran in $(dirname "$PWD")"'
# Once the shutdown began, Ctrl-Alt-Delete is the kernel's again (1): a
# second press reboots a shutdown that hangs.
script "$sv"/SYS/finish 'echo "@@ SYS/finish $* cad $(cat /proc/sys/kernel/ctrl-alt-del)"'
# What SYS/final leaves in the background does not hold the end.
script "$sv"/SYS/final 'sleep 1000 </dev/null >/dev/null 2>&1 & echo "@@ SYS/final $* in $PWD"'
echo 2000 >"$sv"/SYS/timeout-kill
if [ "$scenario" = reincarnate ]; then
	script "$sv"/SYS/reincarnate 'echo "@@ SYS/reincarnate as pid $$, socket $([ -e /run/nitro/nitro.sock ] && echo left || echo removed)"; exec poweroff -f'
fi
# A service with readiness on fd 3; it says when it is stopped.
script "$sv"/ready/run 'trap "echo @@ ready stopped; exit 0" TERM; echo "@@ ready running"; echo >&3; while :; do sleep 1; done'
echo 3 >"$sv"/ready/notification-fd
# A one-shot.
script "$sv"/oneshot/setup 'echo "@@ oneshot set up"'
# A log chain: writer -> logger, the logger prefixes what it reads.
script "$sv"/writer/run 'echo "line from writer"; exec sleep 100000'
ln -s ../logger "$sv"/writer/log
script "$sv"/logger/run 'while read -r line; do echo "@@ logged: $line"; done'
if [ "$scenario" = cgroups ]; then
	# Doubles a string until memory-max stops it, once; then stays up.
	script "$sv"/hog/run '[ -e /run/hog-ran ] && exec sleep 100000; : >/run/hog-ran; x=0123456789abcdef; while :; do x=$x$x; done'
	echo 33554432 >"$sv"/hog/memory-max
	# Starts sleepers without end; pids-max holds it at 8 processes.
	script "$sv"/bomb/run 'while :; do sleep 100000 & done'
	echo 8 >"$sv"/bomb/pids-max
	# The other limits, as written into the cgroup.
	echo "50000 100000" >"$sv"/ready/cpu-max
	echo 200 >"$sv"/ready/cpu-weight
	echo 67108864 >"$sv"/ready/memory-high
	# At the shutdown its cgroup goes as soon as run is gone; its finish
	# gets one made anew, bound as run was.
	script "$sv"/ready/finish 'read -r cg </proc/self/cgroup; cg=${cg#0::}; echo "@@ ready finish in $cg: $(cat /sys/fs/cgroup"$cg"/memory.high)"'
	# Once hog was killed and is up again: what the services say.
	cgroup_checks='
n=0
until nitroctl status hog | grep -q "UP.*OOM kills: 1"; do
	n=$((n + 1)); [ $n -gt 120 ] && break; sleep 1
done
nitroctl status ready hog bomb | while read -r line; do echo "@@ status: $line"; done
nitroctl metrics | grep "oom_kills_total{service=\"hog\"}" | while read -r line; do echo "@@ metric: $line"; done
echo "@@ bomb pids.current $(cat /sys/fs/cgroup/bomb/pids.current), pids.max $(cat /sys/fs/cgroup/bomb/pids.max)"
grep -q "^max [1-9]" /sys/fs/cgroup/bomb/pids.events && echo "@@ bomb hit pids-max"
echo "@@ ready limits: $(cat /sys/fs/cgroup/ready/cpu.max), $(cat /sys/fs/cgroup/ready/cpu.weight), $(cat /sys/fs/cgroup/ready/memory.high)"
'
fi

# The driver: once everything is up, bring the machine down.
case $scenario in
shutdown) action='kill -TERM 1; sleep 1; nitroctl list >/dev/null && echo "@@ survived SIGTERM"; nitroctl Shutdown' ;;
single | reincarnate) action='nitroctl Shutdown' ;;
cgroups) action="$cgroup_checks nitroctl Shutdown" ;;
reboot) action='nitroctl Reboot' ;;
# By its path: busybox's sh may run its own halt applet for `halt`.
halt) action='/bin/halt -f' ;;
cad) action='kill -INT 1' ;;
*) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
script "$sv"/driver/setup "nitroctl -t 60 wait-up ready oneshot writer logger && echo '@@ all up' && $action"

(cd "$root" && find . | cpio -o -H newc --quiet) | gzip -1 >"$work"/initrd-$scenario.gz

log=$work/console-$scenario.log
status=0
timeout 120 qemu-system-x86_64 -m 256 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$work"/initrd-$scenario.gz \
	-append "$cmdline" </dev/null >"$log" 2>&1 || status=$?
tr -d '\r' <"$log" | grep -a '@@\|nitro' || true
if [ "$status" -ne 0 ]; then
	echo "qemu did not exit by itself (status $status)" >&2
	exit 1
fi

# The console must show these lines in this order.
end=reboot dir=/etc/nitro
case $scenario in
shutdown | single | reincarnate | cgroups) end=shutdown ;;
esac
[ "$scenario" = single ] && dir=/etc/nitro.single
expected=("@@ SYS/setup ran in $dir" "@@ all up" "@@ SYS/finish 0 0 $end cad 1" "@@ ready stopped" "@@ SYS/final $end in $dir" "nitro: SYS/final finished with wait status 0")
[ "$scenario" = shutdown ] && expected=("${expected[@]:0:2}" "@@ survived SIGTERM" "${expected[@]:2}")
# Powered off by the kernel: no SYS/finish, no SYS/final.
[ "$scenario" = halt ] && expected=("${expected[@]:0:2}")
# A system handed over is not finalized.
[ "$scenario" = reincarnate ] && expected=("${expected[@]:0:4}" "@@ SYS/reincarnate as pid 1, socket removed")
at=0
while IFS= read -r line; do
	if [ $at -lt ${#expected[@]} ] && [[ $line == *"${expected[$at]}"* ]]; then
		at=$((at + 1))
	fi
done < <(tr -d '\r' <"$log")
if [ $at -ne ${#expected[@]} ]; then
	echo "missing, or out of order: ${expected[$at]}" >&2
	exit 1
fi
if [ "$scenario" = reincarnate ] && grep -aq "@@ SYS/final" "$log"; then
	echo "SYS/final ran although SYS/reincarnate took over" >&2
	exit 1
fi
for needed in "@@ ready running" "@@ oneshot set up" "@@ logged: line from writer"; do
	grep -aq "$needed" "$log" || { echo "missing: $needed" >&2; exit 1; }
done
if [ "$scenario" = cgroups ]; then
	# Each pattern must match one line of the console.
	for needed in \
		"nitro: services run in cgroups below /sys/fs/cgroup\$" \
		"@@ status: hog  *UP .*killed by SIGKILL (OOM kills: 1)\$" \
		"@@ status: ready  *UP  *[0-9]*  *[0-9a-z]*  *0  " \
		"@@ metric: nitro_service_oom_kills_total{service=\"hog\"} 1\$" \
		"@@ bomb pids.current [0-8], pids.max 8\$" \
		"@@ bomb hit pids-max" \
		"@@ ready limits: 50000 100000, 200, 67108864\$" \
		"@@ ready finish in /ready: 67108864\$"; do
		tr -d '\r' <"$log" | grep -aq "$needed" || { echo "missing: $needed" >&2; exit 1; }
	done
fi
echo "boot $scenario: ok"
