#!/bin/sh
# Debian's OVN (ovn-central, ovn-host) and Open vSwitch for bench:ovn, installed when missing. Their
# services must not start: the benchmark runs every daemon itself, in a namespace of its own, and a
# system ovs-vswitchd or ovn-controller would act on the machine's own namespace. A policy-rc.d that
# denies every start is in place for the install (unless one is already there), then removed.
set -e
missing=
for p in ovn-central ovn-host openvswitch-switch; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "bench:ovn: installing$missing (services kept stopped)" >&2
deny_start=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && deny_start=1
fi
status=0
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null || status=$?
[ -z "$deny_start" ] || rm -f /usr/sbin/policy-rc.d
exit "$status"
