// Entry of a worker process (cluster.fork runs this file, not the CLI).
import { runWorker } from './worker.ts';

runWorker();
