"""A stand-in for Neutron's Open vSwitch agent on the test "hosts": it only reports state.

neutron-server binds a port to a host only when a live agent of the mechanism driver's type reports
from that host; without one the port ends `binding_failed` and no port_update is ever sent. This
process reports, over Neutron's own RPC client (PluginReportStateAPI on q-reports-plugin), one OVS
agent per host named on the command line, with the configuration a real agent sends: bridge
mappings for the flat network, tunnel types, and `ovs_hybrid_plug` computed exactly as the OVS agent
computes it, from the firewall driver loaded through Neutron's loader (`firewall_driver`, default
our sg_agent driver). It wires nothing and filters nothing: sg-agent does the filtering in the tests.

Environment: FAKE_AGENT_TRANSPORT_URL, FAKE_AGENT_FIREWALL_DRIVER (default sg_agent),
FAKE_AGENT_INTERVAL_S (default 5). Hosts can be added at run time by writing a name per line to stdin.
Prints JSON lines: {"ready": hosts, "hybrid_plug": bool}, {"reported": host} after the first report
of each host.
"""
import json
import logging
import os
import sys
import threading
import time
import warnings

warnings.simplefilter('ignore')

from neutron_lib import constants as n_const  # noqa: E402
from neutron_lib import context as n_context  # noqa: E402
from neutron_lib import rpc as n_rpc  # noqa: E402
from neutron_lib.agent import topics  # noqa: E402
from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

from neutron.agent import firewall  # noqa: E402
from neutron.agent import rpc as agent_rpc  # noqa: E402
from neutron.api.rpc.callbacks import resources  # noqa: E402
from neutron.conf.agent import common as agent_conf  # noqa: E402

logging.disable(logging.WARNING)
agent_conf.register_agent_state_opts_helper(cfg.CONF)
cfg.CONF([], project='neutron')
interval = float(os.environ.get('FAKE_AGENT_INTERVAL_S', '5'))
cfg.CONF.set_override('report_interval', interval, 'AGENT')
oslo_messaging.set_transport_defaults('neutron')
n_rpc.TRANSPORT = oslo_messaging.get_rpc_transport(cfg.CONF, url=os.environ['FAKE_AGENT_TRANSPORT_URL'])

driver = firewall.load_firewall_driver_class(os.environ.get('FAKE_AGENT_FIREWALL_DRIVER', 'sg_agent'))
# The OVS agent's own expression (ovs_neutron_agent.OVSNeutronAgent.__init__).
hybrid_plug = getattr(driver, 'OVS_HYBRID_PLUG_REQUIRED', False)

context = n_context.get_admin_context_without_session()
state_rpc = agent_rpc.PluginReportStateAPI(topics.REPORTS)
lock = threading.Lock()
hosts = {}
# Set when a host is added, so that it is reported at once rather than at the next round.
wake = threading.Event()


def emit(obj):
    sys.stdout.write(json.dumps(obj) + '\n')
    sys.stdout.flush()


def add_host(host):
    with lock:
        hosts.setdefault(host, {
            'binary': n_const.AGENT_PROCESS_OVS,
            'host': host,
            'topic': n_const.L2_AGENT_TOPIC,
            'agent_type': n_const.AGENT_TYPE_OVS,
            'start_flag': True,
            'resource_versions': dict(resources.LOCAL_RESOURCE_VERSIONS),
            'configurations': {
                'bridge_mappings': {'physnet1': 'br-physnet1'},
                'tunnel_types': ['vxlan'],
                'tunneling_ip': '192.0.2.1',
                'integration_bridge': 'br-int',
                'datapath_type': 'system',
                'ovs_hybrid_plug': hybrid_plug,
                'devices': 0,
            },
            'reported': False,
        })
    wake.set()


def report_all():
    with lock:
        states = list(hosts.values())
    for state in states:
        body = {k: v for k, v in state.items() if k != 'reported'}
        try:
            state_rpc.report_state(context, body, use_call=True)
        except Exception as e:  # the server may be restarting: report again next round
            emit({'error': str(e)[:200], 'host': state['host']})
            continue
        state.pop('start_flag', None)
        state.pop('resource_versions', None)
        if not state['reported']:
            state['reported'] = True
            emit({'reported': state['host']})


def read_stdin():
    for line in sys.stdin:
        if line.strip():
            add_host(line.strip())


for h in sys.argv[1:]:
    add_host(h)
threading.Thread(target=read_stdin, daemon=True).start()
emit({'ready': sorted(hosts), 'hybrid_plug': hybrid_plug})
while True:
    started = time.monotonic()
    wake.clear()
    report_all()
    wake.wait(max(0.2, interval - (time.monotonic() - started)))
