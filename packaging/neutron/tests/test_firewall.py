"""The driver as Neutron's OVS agent loads and uses it, with Neutron's own agent-side code.

Run with the Python that has Neutron and this package installed:
    python -m unittest discover -s packaging/neutron/tests
"""
import unittest
import warnings

warnings.simplefilter('ignore')

from neutron.agent import firewall  # noqa: E402
from neutron.agent import securitygroups_rpc as sg_rpc  # noqa: E402
from neutron.conf.agent import securitygroups_rpc as sg_conf  # noqa: E402
from oslo_config import cfg  # noqa: E402

from sg_agent_neutron import device_name  # noqa: E402
from sg_agent_neutron.firewall import HybridPlugNoopFirewallDriver  # noqa: E402


class ServerThatMustNotBeAsked:
    """The plugin RPC the agent would use to fetch rules: with sg-agent filtering, never called."""

    def __getattr__(self, name):
        raise AssertionError('the OVS agent asked the server for %s' % name)


class FirewallDriverTest(unittest.TestCase):

    def setUp(self):
        sg_conf.register_securitygroups_opts(cfg.CONF)
        cfg.CONF([], project='neutron')
        cfg.CONF.set_override('firewall_driver', 'sg_agent', 'SECURITYGROUP')
        self.addCleanup(cfg.CONF.reset)

    def test_loaded_by_its_alias_through_neutrons_loader(self):
        self.assertIs(firewall.load_firewall_driver_class('sg_agent'), HybridPlugNoopFirewallDriver)

    def test_asks_for_hybrid_plugging(self):
        agent = sg_rpc.SecurityGroupAgentRpc(None, ServerThatMustNotBeAsked())
        # The OVS agent's own expression for the `ovs_hybrid_plug` it reports.
        self.assertTrue(getattr(agent.firewall, 'OVS_HYBRID_PLUG_REQUIRED', False))

    def test_the_agent_skips_all_security_group_work(self):
        agent = sg_rpc.SecurityGroupAgentRpc(None, ServerThatMustNotBeAsked())
        self.assertTrue(agent.noopfirewall_or_firewall_disabled)
        # None of these reaches the server or touches a firewall.
        agent.prepare_devices_filter(['tap1', 'tap2'])
        agent.security_groups_rule_updated(['sg1'])
        agent.security_groups_member_updated(['sg1'])
        agent.remove_devices_filter(['tap1'])
        agent.refresh_firewall(['tap1'])
        self.assertEqual(agent.firewall.ports, {})

    def test_filters_nothing(self):
        driver = HybridPlugNoopFirewallDriver()
        port = {'device': 'tap0123456789a', 'security_groups': ['sg1'], 'fixed_ips': ['10.0.0.1']}
        for call in (driver.prepare_port_filter, driver.update_port_filter, driver.remove_port_filter):
            self.assertIsNone(call(port))
        with driver.defer_apply():
            driver.update_security_group_rules('sg1', [{'direction': 'ingress'}])
            driver.update_security_group_members('sg1', {'IPv4': ['10.0.0.2']})
        self.assertEqual(driver.ports, {})


class DeviceNameTest(unittest.TestCase):

    def test_as_nova_and_neutron_name_the_tap(self):
        self.assertEqual(device_name('3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d'), 'tap3f1b2c4d-5e')

    def test_configurable(self):
        self.assertEqual(device_name('3f1b2c4d-5e6f', prefix='vnet', length=15), 'vnet3f1b2c4d-5e')

    def test_refuses_names_the_kernel_would_not_take(self):
        for prefix, length in (('', 14), ('tap', 3), ('tap', 16)):
            with self.assertRaises(ValueError):
                device_name('3f1b2c4d', prefix=prefix, length=length)


if __name__ == '__main__':
    unittest.main()
