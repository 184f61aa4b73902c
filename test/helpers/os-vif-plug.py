"""Plugs or unplugs a VM's port with os-vif, exactly as Nova's libvirt driver does for a port Neutron
bound with `vif_type = ovs` and `ovs_hybrid_plug: true`: a `VIFBridge` (the per-port Linux bridge
qbr…, the veth pair qvb…/qvo…, qvo… on br-int with the external ids the OVS agent looks for).
Libvirt's part, the VM's tap on qbr…, is the caller's (test/helpers/openstack-env.ts).

Runs inside the compute host's network namespace. os-vif reads `[os_vif_ovs] ovsdb_connection` only
inside os_vif.initialize(), from the configuration files: hence the file argument, written by the
caller with that host's OVS database socket. Its privileged helper is started through `sudo`.

Usage: os-vif-plug.py CONFIG_FILE plug|unplug JSON
JSON: {"port_id", "mac", "network_id", "instance_uuid", "project_id", "bridge", "datapath_type"}
"""
import json
import sys
import warnings

warnings.simplefilter('ignore')

from oslo_config import cfg  # noqa: E402
import os_vif  # noqa: E402
from os_vif import objects  # noqa: E402

config_file, action, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg.CONF(['--config-file', config_file], project='nova')
os_vif.initialize()

port_id = spec['port_id']
# Nova's names: nova.network.model (NIC_NAME_LEN = 14) and the libvirt driver's get_vif_devname.
vif = objects.vif.VIFBridge(
    id=port_id,
    address=spec['mac'],
    network=objects.network.Network(id=spec['network_id'], bridge=spec.get('bridge', 'br-int'),
                                    subnets=objects.subnet.SubnetList(objects=[]), mtu=1500),
    plugin='ovs',
    vif_name=('tap' + port_id)[:14],
    bridge_name=('qbr' + port_id)[:14],
    has_traffic_filtering=True,
    preserve_on_delete=False,
    active=False,
    port_profile=objects.vif.VIFPortProfileOpenVSwitch(interface_id=port_id,
                                                       datapath_type=spec.get('datapath_type', 'netdev')),
)
instance = objects.instance_info.InstanceInfo(uuid=spec['instance_uuid'], name='instance-' + spec['instance_uuid'][:8],
                                              project_id=spec['project_id'])
if action == 'plug':
    os_vif.plug(vif, instance)
elif action == 'unplug':
    os_vif.unplug(vif, instance)
else:
    sys.exit('usage: os-vif-plug.py CONFIG_FILE plug|unplug JSON')
print(json.dumps({action: port_id}))
