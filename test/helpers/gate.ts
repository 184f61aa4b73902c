// Which tests can run here, decided when a test is declared (ava skips only there, never from inside a
// running test). A test that needs what this machine lacks is reported SKIPPED, with the reason printed
// once; where the privileged tests are required (CI, SG_REQUIRE_KERNEL: scripts/test.sh, npm test) it
// is declared all the same and FAILS, naming what is missing. It is never reported as passed.
import test, { type ExecutionContext } from 'ava';
import { canUseNetns } from './netns.js';

type Impl = (t: ExecutionContext) => PromiseLike<void> | void;

export interface GatedTest {
  (title: string, impl: Impl): void;
  serial(title: string, impl: Impl): void;
  /** Whether the tests declared through this run here: a `before` hook does its setup only then. */
  readonly runs: boolean;
}

/** Set: a test that cannot run is a failure, not a skip. */
export function privilegedTestsRequired(): boolean {
  return [process.env.CI, process.env.SG_REQUIRE_KERNEL].some((v) => !!v && v !== '0' && v !== 'false');
}

/** Tests that need what `missing` names (undefined: nothing is missing here). */
export function testsNeeding(missing: string | undefined): GatedTest {
  if (missing === undefined) {
    return Object.assign((title: string, impl: Impl) => test(title, impl), {
      serial: (title: string, impl: Impl) => test.serial(title, impl),
      runs: true,
    });
  }
  if (privilegedTestsRequired()) {
    const fail = (t: ExecutionContext) => t.fail(`cannot run here: needs ${missing} (CI or SG_REQUIRE_KERNEL requires this test to run)`);
    return Object.assign((title: string) => test(title, fail), { serial: (title: string) => test.serial(title, fail), runs: false });
  }
  let said = false;
  const skip = (declare: (title: string, impl: Impl) => void) => (title: string, impl: Impl) => {
    if (!said) console.log(`skipped: the tests that need ${missing} (set SG_REQUIRE_KERNEL=1 to make that a failure)`);
    said = true;
    declare(title, impl);
  };
  return Object.assign(
    skip((title, impl) => test.skip(title, impl)),
    {
      serial: skip((title, impl) => test.serial.skip(title, impl)),
      runs: false,
    },
  );
}

const isRoot = process.getuid?.() === 0;

/** Tests in throwaway network namespaces (ipsets, iptables, nf_tables, packets): root and ip(8). */
export const kernelTest = testsNeeding(canUseNetns() ? undefined : 'root and the ip(8) tool, to create network namespaces');

/** Tests on a RabbitMQ node of their own (test/helpers/test-broker.ts): root, to start it as the
 *  rabbitmq user and to run rabbitmqctl. */
export const brokerTest = testsNeeding(isRoot ? undefined : 'root, to start a RabbitMQ node of its own');
