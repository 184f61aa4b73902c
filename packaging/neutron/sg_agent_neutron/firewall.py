"""The firewall driver to configure in the OVS agent: ``[securitygroup] firewall_driver = sg_agent``."""

from neutron.agent import firewall


class HybridPlugNoopFirewallDriver(firewall.NoopFirewallDriver):
    """Filters nothing, and makes the agent report ``ovs_hybrid_plug: True``.

    Being a NoopFirewallDriver is what makes the agent skip its security-group work (no RPC for
    rules, no iptables or OpenFlow filtering): Neutron's agent tests ``isinstance(firewall,
    NoopFirewallDriver)``. The class attribute is what the agent reads to report hybrid plugging in
    its state, and the server's OVS mechanism driver copies it into the port's vif_details, so Nova
    (os-vif) plugs the VM's tap into a per-port Linux bridge (qbr…) instead of straight into br-int.
    """

    OVS_HYBRID_PLUG_REQUIRED = True
