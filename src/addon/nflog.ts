// The packet-log reader of the native addon: a socket bound to one nfnetlink_log group in a
// namespace, whose packets (what the rules with `log group N` / `NFLOG --nflog-group N` send) arrive
// in batches on a thread of the addon's own. The packet's shape is declared once, in Rust
// (native/core/src/nflog/reader.rs), and generated.
import { native } from './native.js';
import { callNative } from './errors.js';
import { batchReader } from './listener.js';
import type { LogPacket } from './nftables-types.js';

export type { EtherHeader, LogPacket } from './nftables-types.js';

type Handle = Awaited<ReturnType<typeof native.NativeNflogListener.start>>;

export class NflogListener {
  private constructor(private readonly h: Handle) {}

  /** Binds `group` (rejects with NFLOG_FAILED if it cannot be had: EBUSY, another socket holds it),
   *  copying up to `copyRange` bytes of each packet; `onPackets` gets each batch, `onError` hears of
   *  packets lost or of the reader ending. */
  static async start(
    netns: string | undefined,
    group: number,
    copyRange: number,
    onPackets: (p: LogPacket[]) => void,
    onError: (message: string) => void,
  ): Promise<NflogListener> {
    const h = await callNative(() =>
      native.NativeNflogListener.start(
        netns ?? null,
        group,
        copyRange,
        batchReader<LogPacket[]>('packets', 'logged packets', onPackets, onError),
      ),
    );
    return new NflogListener(h);
  }

  stop(): Promise<void> {
    return callNative(() => this.h.stop());
  }
}
