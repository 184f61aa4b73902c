"""The Neutron baseline for bench/storm.ts: Neutron's own agent-side security-group code, installed
from PyPI (bench/neutron-venv.sh), with the pre-ipset configuration the seed thread started from.

Neutron's code does the work: oslo.messaging (through neutron_lib.rpc) delivers the fanout cast
`security_groups_member_updated` to Neutron's `SecurityGroupAgentRpcCallbackMixin`, which marks the
ports for refresh in Neutron's `SecurityGroupAgentRpc` (deferred refresh, as the OVS agent runs it);
the loop's `setup_port_filters` fetches rules with Neutron's `SecurityGroupServerRpcApi`
(`security_group_rules_for_devices`: each remote-group rule expanded per member) and applies them
with Neutron's `IptablesFirewallDriver` (enable_ipset = False: one iptables rule per member) and
`IptablesManager`, in the agent's namespace. Ours is only the glue a real agent gets elsewhere, each
piece the cheapest stand-in, so the figure is a lower bound of a real agent's:
- the loop: the OVS agent's 2 s polling loop; where it reads new ports from OVSDB this one asks the
  benchmark's server (`devices_on_host`, a stand-in RPC), or against a real neutron-server reads a
  file the benchmark writes (BASE_DEVICES_FILE), in iterations in which casts arrived;
- privileges: no rootwrap and no privsep daemon; the tools run as children of this process;
- logging: errors only;
- external locks (oslo.concurrency) in BASE_LOCK_DIR, a directory the caller makes and removes.
Prints JSON lines ({"ready"}, then {"applied", "ports", "at"} per iteration) for bench/storm.ts and
bench/neutron.ts.
"""
import json
import logging
import os
import sys
import time
import warnings

# Neutron names its chains after the running program (IptablesManager's binary_name, read on import).
sys.argv[0] = 'neutron-openvswitch-agent'
warnings.simplefilter('ignore')

from neutron_lib import context as n_context  # noqa: E402
from neutron_lib import rpc as n_rpc  # noqa: E402
from neutron_lib.agent import topics  # noqa: E402
from oslo_concurrency import lockutils  # noqa: E402
from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

from neutron import privileged  # noqa: E402
from neutron.agent import securitygroups_rpc as sg_rpc  # noqa: E402
from neutron.agent.linux import iptables_firewall  # noqa: E402
from neutron.api.rpc.handlers import securitygroups_rpc as sg_rpc_handlers  # noqa: E402
from neutron.conf.agent import common as agent_conf  # noqa: E402
from neutron.conf.agent import securitygroups_rpc as sg_conf  # noqa: E402
from neutron.conf.agent.database import agents_db  # noqa: E402
from neutron.conf import service as service_conf  # noqa: E402

HOST = os.environ['BASE_HOST']
DEVICES_FILE = os.environ.get('BASE_DEVICES_FILE')
NETNS = os.environ['BASE_NETNS']
POLL_S = 2.0

agent_conf.register_root_helper(cfg.CONF)
sg_conf.register_securitygroups_opts(cfg.CONF)
agents_db.register_db_agents_opts(cfg.CONF)
# As the OVS agent's main does: its RPC client backs off up to this on timeouts of a loaded server.
service_conf.register_service_opts(service_conf.RPC_EXTRA_OPTS, cfg.CONF)
cfg.CONF.register_opt(cfg.StrOpt('host', default=HOST))
cfg.CONF([], project='neutron')
# Errors only: Neutron warns of duplicate rules on every apply here, and printing that is CPU too.
logging.disable(logging.WARNING)
cfg.CONF.set_override('root_helper', '', 'AGENT')
cfg.CONF.set_override('enable_ipset', False, 'SECURITYGROUP')
cfg.CONF.set_override('firewall_driver', 'noop', 'SECURITYGROUP')  # replaced below
# The caller's directory, which it removes: this process ends by SIGKILL, with no chance to clean up.
lockutils.set_defaults(os.environ['BASE_LOCK_DIR'])
for ctx in (privileged.default, privileged.dhcp_release_cmd, privileged.ovs_vsctl_cmd,
            privileged.namespace_cmd, privileged.conntrack_cmd, privileged.link_cmd):
    ctx.set_client_mode(False)
oslo_messaging.set_transport_defaults('neutron')
n_rpc.TRANSPORT = oslo_messaging.get_rpc_transport(
    cfg.CONF, url=os.environ['BASE_AMQP_URL'].replace('amqp://', 'rabbit://', 1))


def emit(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


class PluginRpc:
    """What the agent asks the server, through Neutron's own RPC client (the legacy call)."""

    def __init__(self):
        self.api = sg_rpc_handlers.SecurityGroupServerRpcApi(topics.PLUGIN)
        self.client = n_rpc.get_client(oslo_messaging.Target(topic=topics.PLUGIN, version='1.0'))

    def security_group_info_for_devices(self, context, device_ids):
        devices = self.api.security_group_rules_for_devices(context, list(device_ids))
        return {'devices': devices, 'security_groups': {}, 'sg_member_ips': {}}

    def devices_on_host(self, context):
        if DEVICES_FILE:
            # A real neutron-server has no such call: the benchmark writes the host's devices to a file,
            # as a real agent reads them from OVSDB (bench/neutron.ts).
            with open(DEVICES_FILE) as f:
                return [line.strip() for line in f if line.strip()]
        return self.client.prepare(timeout=60).call(context, 'devices_on_host', host=HOST)


class Endpoint(sg_rpc_handlers.SecurityGroupAgentRpcCallbackMixin):
    target = oslo_messaging.Target(version='1.3')

    def __init__(self, sg_agent):
        self.sg_agent = sg_agent

    def security_groups_member_updated(self, context, **kwargs):
        global dirty
        dirty = True
        super().security_groups_member_updated(context, **kwargs)


context = n_context.get_admin_context_without_session()
plugin = PluginRpc()
agent = sg_rpc.SecurityGroupAgentRpc(context, plugin, defer_refresh_firewall=True)
# Neutron's driver loader passes no namespace (its agents own the host's): the driver is built here.
agent.firewall = iptables_firewall.IptablesFirewallDriver(namespace=NETNS)
dirty = True
consumers = n_rpc.Connection()
consumers.create_consumer(topics.get_topic_name(topics.AGENT, topics.SECURITY_GROUP, topics.UPDATE),
                          [Endpoint(agent)], fanout=True)
consumers.consume_in_threads()


def iteration():
    global dirty
    dirty = False
    devices = set(plugin.devices_on_host(context))
    agent.setup_port_filters(devices - set(agent.firewall.ports), set())
    rules = [r for d in agent.firewall.ports.values() for r in d.get('security_group_rules', [])
             if r['direction'] == 'ingress' and r['ethertype'] == 'IPv4' and r.get('source_ip_prefix')]
    ports = len(agent.firewall.ports)
    emit({'applied': round(len(rules) / ports) if ports else 0, 'ports': ports, 'at': int(time.time() * 1000)})


def devices_changed():
    # A new line in the file is a new port on OVSDB to the real agent: its loop processes it.
    global devices_mtime
    if not DEVICES_FILE or not os.path.exists(DEVICES_FILE):
        return False
    mtime = os.stat(DEVICES_FILE).st_mtime_ns
    changed, devices_mtime = mtime != devices_mtime, mtime
    return changed


devices_mtime = None
emit({'ready': True})
while True:
    started = time.monotonic()
    if devices_changed() or dirty:
        iteration()
    time.sleep(max(0.0, POLL_S - (time.monotonic() - started)))
