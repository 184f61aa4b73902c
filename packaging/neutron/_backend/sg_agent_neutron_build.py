"""This package's own PEP 517 build backend.

It zips ``sg_agent_neutron`` as it is into a pure-Python wheel: nothing to download (pip's isolated
build environment has nothing to install, so ``pip install packaging/neutron`` works offline, where a
setuptools backend needs setuptools, and wheel, from an index) and nothing written into the source
tree but Python's bytecode cache (setuptools leaves ``build/`` and ``*.egg-info`` there). The
package's metadata lives here.
"""

import base64
import hashlib
import io
import os
import tarfile
import zipfile

NAME = 'sg-agent-neutron'
VERSION = '0.1.0'
SUMMARY = ('Neutron OVS agent firewall driver for hosts where sg-agent filters: '
           'hybrid plugging, no filtering by the agent.')
LICENSE = 'Apache-2.0'
REQUIRES_PYTHON = '>=3.9'
PACKAGE = 'sg_agent_neutron'
# Neutron itself is not a dependency: the package goes next to the OVS agent's own Neutron.
ENTRY_POINTS = {
    'neutron.agent.firewall_drivers': {
        'sg_agent': 'sg_agent_neutron.firewall:HybridPlugNoopFirewallDriver',
    },
}

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_DIST = '%s-%s' % (NAME.replace('-', '_'), VERSION)
# Fixed times, so that the same sources make the same archive.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _metadata():
    return ('Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\nLicense: %s\n'
            'Requires-Python: %s\n' % (NAME, VERSION, SUMMARY, LICENSE, REQUIRES_PYTHON)).encode()


def _entry_points():
    out = []
    for group, entries in ENTRY_POINTS.items():
        out.append('[%s]' % group)
        out.extend('%s = %s' % item for item in sorted(entries.items()))
        out.append('')
    return '\n'.join(out).encode()


def _sources(top):
    """(path relative to the package root, bytes) of every .py file under ``top``, in order."""
    for base, dirs, files in os.walk(os.path.join(_ROOT, top)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for name in sorted(files):
            if name.endswith('.py'):
                full = os.path.join(base, name)
                with open(full, 'rb') as f:
                    yield os.path.relpath(full, _ROOT).replace(os.sep, '/'), f.read()


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()
    return '%s,sha256=%s,%d' % (path, digest, len(data))


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = '%s.dist-info' % _DIST
    files = list(_sources(PACKAGE)) + [
        ('%s/METADATA' % info, _metadata()),
        ('%s/WHEEL' % info, ('Wheel-Version: 1.0\nGenerator: %s build backend\nRoot-Is-Purelib: true\n'
                             'Tag: py3-none-any\n' % NAME).encode()),
        ('%s/entry_points.txt' % info, _entry_points()),
    ]
    record_path = '%s/RECORD' % info
    record = '\n'.join([_record_line(p, d) for p, d in files] + ['%s,,' % record_path, '']).encode()
    wheel_name = '%s-py3-none-any.whl' % _DIST
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), 'w', zipfile.ZIP_DEFLATED) as whl:
        for path, data in files + [(record_path, record)]:
            entry = zipfile.ZipInfo(path, _ZIP_TIME)
            entry.external_attr = 0o644 << 16
            whl.writestr(entry, data, zipfile.ZIP_DEFLATED)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    files = [('PKG-INFO', _metadata())]
    with open(os.path.join(_ROOT, 'pyproject.toml'), 'rb') as f:
        files.append(('pyproject.toml', f.read()))
    files += list(_sources('_backend')) + list(_sources(PACKAGE)) + list(_sources('tests'))
    name = '%s.tar.gz' % _DIST
    with tarfile.open(os.path.join(sdist_directory, name), 'w:gz') as tar:
        for path, data in files:
            entry = tarfile.TarInfo('%s/%s' % (_DIST, path))
            entry.size = len(data)
            entry.mode = 0o644
            tar.addfile(entry, io.BytesIO(data))
    return name
