// Loaded by path (it is bundled into the workflow code too): failure messages and stack traces
// become a payload, so the payload codec encrypts them like everything else.
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
