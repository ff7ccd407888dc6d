// Thread entry for the TAP reader: registers the TypeScript loader in this thread, then runs tap-thread.ts (as vcpu/worker-entry.mjs does for the domain).
import { register } from 'tsx/esm/api';
register();
await import('./tap-thread.ts');
