#!/bin/bash
# The part of the install test that runs chrooted into the overlay (see
# install.sh): dpkg -i, man -w, status with no flags, ocf-tester, an upgrade
# over a running daemon, dpkg -r, the csync2 alternative, dpkg -P.
set -euo pipefail
say() { echo "== $*"; }
fail() { echo "FAIL: $*"; exit 1; }
deb=/tmp/ocf-csync.deb
host=$(hostname)
# The overlay starts as this machine is; what other tests and demos left of
# ocf-csync goes (in the overlay only), so the package meets a clean system.
rm -rf /var/lib/ocf-csync /var/log/ocf-csync /etc/ocf-csync.cfg /etc/ocf-csync /usr/lib/ocf/resource.d/csync \
	/etc/ha.d/resource.d/mirror /usr/sbin/ocf-csync
real_csync2=""
if [ -e /usr/sbin/csync2 ] && [ ! -L /usr/sbin/csync2 ]; then
	real_csync2=$(sha256sum /usr/sbin/csync2)
fi
say "dpkg -i $(dpkg-deb -f $deb Package) $(dpkg-deb -f $deb Version)"
dpkg -i "$deb"
dpkg -L ocf-csync > /tmp/files
conffiles=$(dpkg-query -W -f="\${Conffiles}\n" ocf-csync | awk "{print \$1}" | tr "\n" " ")
echo "conffiles: $conffiles"
for f in /usr/sbin/ocf-csync /usr/lib/ocf/resource.d/csync/mirror /etc/ha.d/resource.d/mirror \
	/usr/share/bash-completion/completions/ocf-csync /usr/share/doc/ocf-csync/examples/ocf-csync.cfg \
	/etc/cron.d/ocf-csync /etc/logrotate.d/ocf-csync /lib/systemd/system/ocf-csync.service \
	/lib/systemd/system/ocf-csync-sync.timer; do
	[ -e "$f" ] || fail "$f is not installed"
done
[ ! -e /etc/ocf-csync.cfg ] || fail "the package installed a live /etc/ocf-csync.cfg"
grep -q "^\*/10" /etc/cron.d/ocf-csync && fail "the cron job is enabled by default"
if [ -n "$real_csync2" ]; then
	[ "$(sha256sum /usr/sbin/csync2)" = "$real_csync2" ] || fail "the real csync2 was replaced"
fi
ls /run/resource-agents/ocf-csync-*.state 2>/dev/null && fail "the package started a daemon"

say "man -w ocf-csync"
page=$(man -w ocf-csync)
echo "$page"
[ "$page" = /usr/share/man/man8/ocf-csync.8.gz ] || fail "man -w found $page"
man ocf-csync 2>/dev/null | grep -q "csync2" || fail "the manual page does not render"

say "ocf-csync status with no flags"
set +e
out=$(cd / && env -u OCF_CSYNC_CONFIG ocf-csync status 2>&1); rc=$?
set -e
echo "$out (exit $rc)"
if [ -e /etc/csync2.cfg ]; then
	echo "$out" | grep -q "/etc/csync2.cfg" || fail "status without /etc/ocf-csync.cfg did not read /etc/csync2.cfg"
else
	[ $rc = 3 ] && echo "$out" | grep -q "tried /etc/ocf-csync.cfg and /etc/csync2.cfg" || fail "status without a config"
fi
mkdir -p /etc/ocf-csync /srv/mirror
ocf-csync keygen /etc/ocf-csync/g.key
cat > /etc/ocf-csync.cfg <<CFG
group g {
	host $host;
	key /etc/ocf-csync/g.key;
	include /srv/mirror;
}
CFG
out=$(cd / && ocf-csync status)
echo "$out"
echo "$out" | grep -q "^node: *$host" || fail "status with no flags did not read /etc/ocf-csync.cfg"

say "ocf-tester /usr/lib/ocf/resource.d/csync/mirror"
export HA_RSCTMP=/run/resource-agents
mkdir -p $HA_RSCTMP
ocf-tester -n t1 -o config=/etc/ocf-csync.cfg -o state_dir=/tmp/ocf-state /usr/lib/ocf/resource.d/csync/mirror \
	|| fail "ocf-tester"

say "upgrade over a running daemon: postinst leaves it alone"
/etc/ha.d/resource.d/mirror /etc/ocf-csync.cfg start
daemon_pid() { sed -n "s/.*\"pid\": *\([0-9]*\).*/\1/p" $HA_RSCTMP/ocf-csync-ocf-csync.state; }
pid=$(daemon_pid)
[ -n "$pid" ] && kill -0 "$pid" || fail "the daemon did not start"
dpkg -i "$deb"
[ "$(daemon_pid)" = "$pid" ] && kill -0 "$pid" || fail "the upgrade restarted or stopped the daemon (pid $pid)"
/etc/ha.d/resource.d/mirror /etc/ocf-csync.cfg stop
# The admin's own files: the config, the key and the state databases.
rm -f /etc/ocf-csync.cfg; rm -rf /etc/ocf-csync /tmp/ocf-state /var/lib/ocf-csync/*

say "dpkg -r: nothing left but the conffiles"
dpkg -r ocf-csync
left=""
while read -r f; do
	case " $conffiles " in *" $f "*) continue ;; esac
	if [ -d "$f" ]; then
		# A directory of ours stays only if something else is in it.
		[ -z "$(ls -A "$f")" ] && ! dpkg -S "$f" >/dev/null 2>&1 && left="$left $f/"
	elif [ -L "$f" ] || [ -e "$f" ]; then
		left="$left $f"
	fi
done < /tmp/files
for d in /var/lib/ocf-csync /var/log/ocf-csync; do [ -e $d ] && left="$left $d"; done
[ -z "$left" ] || fail "dpkg -r left:$left"
for f in $conffiles; do [ -e "$f" ] || fail "conffile $f went with dpkg -r (only purge removes it)"; done
update-alternatives --query csync2 >/dev/null 2>&1 && fail "the csync2 alternative outlived the package"
if [ -n "$real_csync2" ]; then
	[ "$(sha256sum /usr/sbin/csync2)" = "$real_csync2" ] || fail "the real csync2 was touched"
	say "without csync2: csync2 is the alternative"
	dpkg -r --force-depends csync2 >/dev/null
fi
dpkg -i "$deb" >/dev/null
[ "$(readlink -f /usr/sbin/csync2)" = /usr/sbin/ocf-csync ] || fail "/usr/sbin/csync2 is not the ocf-csync alternative"
set +e; csync2 -H; rc=$?; set -e
[ $rc = 2 ] || fail "csync2 -H through the alternative exited $rc, want 2"
dpkg -P ocf-csync >/dev/null
[ ! -e /usr/sbin/csync2 ] || fail "/usr/sbin/csync2 left after purge"
for f in $conffiles; do [ ! -e "$f" ] || fail "conffile $f left after purge"; done
echo "install test passed"

