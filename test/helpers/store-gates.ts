// Which of the replicated store's tests can run here (test/helpers/gate.ts says how a test that cannot
// is reported: skipped, or failed where the privileged tests are required).
import { testsNeeding } from './gate.js';
import { hasEtcd } from './etcd.js';
import { hasLabTools } from './lab.js';
import { canUseNetns } from './netns.js';

/** Tests on an etcd cluster of their own (test/helpers/etcd.ts). */
export const etcdTest = testsNeeding(hasEtcd() ? undefined : 'etcd (Debian package etcd-server, which scripts/setup.sh installs)');

/** Tests on the three-machine lab (test/helpers/lab.ts): namespaces (root), etcd and RabbitMQ. */
export const labTest = testsNeeding(
  !canUseNetns()
    ? 'root and the ip(8) tool, to create network namespaces'
    : !hasLabTools()
      ? 'etcd, rabbitmq-server and curl (scripts/setup.sh installs them)'
      : undefined,
);

/** Tests that need both the kernel's namespaces and etcd. */
export const kernelEtcdTest = testsNeeding(
  !canUseNetns()
    ? 'root and the ip(8) tool, to create network namespaces'
    : !hasEtcd()
      ? 'etcd (Debian package etcd-server, which scripts/setup.sh installs)'
      : undefined,
);
