// The one callback of each of the addon's listeners (trace events, logged packets, devices changed):
// the addon's thread hands every batch over as JSON text, `{"<key>": <batch>}`, and a failure as
// `{"error": "<why>"}` (native/src/napi_listen.rs). Read here once, for all of them.

/** A callback for a listener's JSON text: each `key` batch to `onBatch`, each failure (and text
 *  that cannot be read, named by `what`) to `onError`. */
export function batchReader<T>(
  key: string,
  what: string,
  onBatch: (batch: T) => void,
  onError: (message: string) => void,
): (text: string) => void {
  return (text) => {
    try {
      const batch = JSON.parse(text) as Record<string, unknown>;
      if (batch[key] !== undefined) onBatch(batch[key] as T);
      if (typeof batch.error === 'string') onError(batch.error);
    } catch (e) {
      onError(`unreadable ${what}: ${(e as Error).message}`);
    }
  };
}
