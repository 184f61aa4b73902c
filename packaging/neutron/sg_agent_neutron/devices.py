"""The name of a port's device on its host, as Neutron and Nova make it."""

# Neutron's constants: 'tap' prefix, 14-character device names (the kernel allows 15).
DEFAULT_PREFIX = 'tap'
DEFAULT_LENGTH = 14
_IFNAMSIZ = 15


def device_name(port_id, prefix=DEFAULT_PREFIX, length=DEFAULT_LENGTH):
    """``tap`` + the first 11 characters of the port id, by default.

    With hybrid plugging this is the VM's tap device on its qbr bridge: the device whose bridged
    traffic sg-agent filters with physdev matches.
    """
    if not prefix or length <= len(prefix) or length > _IFNAMSIZ:
        raise ValueError('device names need a prefix and room for part of the port id, '
                         'within %d characters' % _IFNAMSIZ)
    return (prefix + port_id)[:length]
