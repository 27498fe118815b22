// A KMS endpoint that answers GetParametersForImport with whatever a test sets: the AWS SDK talks
// to it as to KMS (it is passed as the client's endpoint), so the real activity code parses it.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KMSClient } from '@aws-sdk/client-kms';

export interface HostileKms {
  client: KMSClient;
  /** The raw body of the next answers (HTTP 200, application/x-amz-json-1.1). */
  body: string;
  close(): Promise<void>;
}

export async function startHostileKms(): Promise<HostileKms> {
  const state = { body: '{}' };
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'hostile' });
      res.end(state.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const client = new KMSClient({
    region: 'us-east-1',
    endpoint: `http://127.0.0.1:${port}`,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    maxAttempts: 1,
  });
  return {
    client,
    get body() {
      return state.body;
    },
    set body(value: string) {
      state.body = value;
    },
    async close() {
      client.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
