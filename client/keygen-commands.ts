// `byok keygen`: an approver's Ed25519 key pair for signing decisions.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { CliError, Exit, parse, print, showUsage, type Command } from './command';
import { keysDir, privateKeyPath, publicKeyPath, rawPublicKeyHex } from './approver-keys';

const KEYGEN_USAGE = `usage: byok keygen --as NAME [--dir DIR] [--json]

Writes an Ed25519 key pair for approver NAME: DIR/NAME.key (private, mode 0600; it never leaves
this machine) and DIR/NAME.pub (public; give it to whoever starts imports, who puts it in their
approver keys folder). DIR defaults to $BYOK_KEYS_DIR, else ~/.byok/keys. Existing files are
never overwritten.`;

const NAME = /^[A-Za-z0-9._@-]{1,64}$/;

async function keygenCommand(args: string[]): Promise<number> {
  const { values: v } = parse(args, { as: { type: 'string' }, dir: { type: 'string' }, json: { type: 'boolean' } });
  if (v.help) return showUsage(KEYGEN_USAGE);
  if (!v.as || !NAME.test(v.as) || v.as.startsWith('.')) {
    throw new CliError('keygen: --as NAME is required: 1-64 characters of A-Z a-z 0-9 . _ @ -, not starting with "."', Exit.USAGE);
  }
  const dir = v.dir ?? keysDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const files = { privateKey: privateKeyPath(dir, v.as), publicKey: publicKeyPath(dir, v.as) };
  try {
    // 'wx': fail if the file exists, so a key in use is never replaced.
    writeFileSync(files.privateKey, privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CliError(`keygen: ${files.privateKey} exists; refusing to overwrite a key (move it away first)`, Exit.REFUSED);
    }
    throw err;
  }
  writeFileSync(files.publicKey, publicKey.export({ format: 'pem', type: 'spki' }), { mode: 0o644, flag: 'w' });
  const hex = rawPublicKeyHex(publicKey);
  print(v.json, { approver: v.as, ...files, publicKeyHex: hex }, () => {
    console.log(`wrote ${files.privateKey} (private, keep it here) and ${files.publicKey}`);
    console.log(`public key of ${v.as}: ${hex}`);
  });
  return Exit.OK;
}

export const keygenCommands: Record<string, Command> = {
  keygen: { summary: "create an approver's signing key pair", usage: KEYGEN_USAGE, run: keygenCommand },
};
