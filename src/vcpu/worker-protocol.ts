// What the main thread and a domain thread share: the start message and the console-input ring in a SharedArrayBuffer.
import type { DomainConfig } from '../toolstack/create.js';

export interface WorkerInit {
  config: DomainConfig;
  /** Int32[0]: wake flag; Int32[1]: write index; Int32[2]: read index; bytes from offset 16 (ring of INPUT_RING bytes). */
  input: SharedArrayBuffer;
  readyMarker: string;
}
export const INPUT_RING = 64 * 1024;
