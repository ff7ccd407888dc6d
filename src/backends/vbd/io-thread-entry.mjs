// Thread entry for a domain's block I/O thread: registers the TypeScript loader in this thread, then runs io-thread.ts.
import { register } from 'tsx/esm/api';
register();
await import('./io-thread.ts');
