"""Compute-host glue between Neutron's Open vSwitch agent and sg-agent.

sg-agent filters every port; Neutron's OVS agent keeps wiring them. The OVS agent only asks Nova for
hybrid plugging (the VM's tap on its own Linux bridge, where iptables and ipsets can see its traffic)
when its firewall driver says so, and only skips its own filtering when the driver is a no-op driver.
"""

from sg_agent_neutron.devices import device_name  # noqa: F401
