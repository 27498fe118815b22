// `byok evidence`: the audit record of a request from its history, and its offline verification.
import { readFileSync } from 'node:fs';
import { approverKeysDir, readApproverKeys } from './approver-keys';
import { CliError, Exit, parse, showUsage, withWorkflow, type Command } from './command';
import { buildEvidence, checkSignatures, EVIDENCE_FORMAT, type EvidenceRecord } from './evidence-record';

const EVIDENCE_USAGE = `usage: byok evidence <workflow-id> [--json | --markdown]
       byok evidence verify FILE [--keys DIR]

The first form builds, from the workflow's history alone, the audit record of a request: who
asked, who decided (with each signed statement and signature), when, the KMS key ARN, the HSM key
id and key check value, the wrapping algorithm, token refreshes and the verification of the
imported key; and checks the signatures with the keys the request was started with.
Save it with --json to verify it later.

"verify" re-checks every signature of a saved --json record offline, with the approvers' own
public keys: DIR/NAME.pub (default $BYOK_APPROVER_KEYS_DIR, else $BYOK_KEYS_DIR, else
~/.byok/keys), compared with the keys recorded. Exit 0 if every counted decision verifies, 3 if not.`;

async function evidenceCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, { json: { type: 'boolean' }, markdown: { type: 'boolean' }, keys: { type: 'string' } });
  if (v.help) return showUsage(EVIDENCE_USAGE);
  if (positionals[0] === 'verify') return verifyCommand(positionals.slice(1), v.keys);
  if (positionals.length !== 1) throw new CliError(`evidence: expected one workflow id\n${EVIDENCE_USAGE}`, Exit.USAGE);
  if (v.json && v.markdown) throw new CliError('evidence: --json and --markdown exclude each other', Exit.USAGE);
  const [workflowId] = positionals;
  return withWorkflow(workflowId, async (handle) => {
    // The client's data converter, payload codec included, decodes what the history stores.
    const record = await buildEvidence(workflowId, await handle.fetchHistory(), handle.client.options.loadedDataConverter);
    if (v.json) console.log(JSON.stringify(record, null, 2));
    else console.log(v.markdown ? markdown(record) : text(record));
    return Exit.OK;
  });
}

function verifyCommand(files: string[], keysDir: string | undefined): number {
  if (files.length !== 1) throw new CliError(`evidence verify: expected one FILE\n${EVIDENCE_USAGE}`, Exit.USAGE);
  let record: EvidenceRecord;
  try {
    record = JSON.parse(readFileSync(files[0], 'utf8'));
  } catch (err) {
    throw new CliError(`evidence verify: cannot read ${files[0]}: ${(err as Error).message}`, Exit.USAGE);
  }
  if (record?.format !== EVIDENCE_FORMAT) throw new CliError(`evidence verify: ${files[0]} is not a ${EVIDENCE_FORMAT} record (byok evidence ID --json)`, Exit.USAGE);
  const dir = keysDir ?? approverKeysDir();
  const keys = readApproverKeys(dir, record.approvers);
  const check = checkSignatures(record, keys);
  // The workflow checked against the keys it was given: those must be the approvers' own.
  for (const approver of record.approvers) {
    if (record.approverKeys && record.approverKeys[approver] !== keys[approver]) {
      check.ok = false;
      check.lines.push(`FAIL the request was started with another public key for ${approver} than ${dir}/${approver}.pub`);
    }
  }
  for (const line of check.lines) console.log(line);
  console.log(`${record.workflowId}: ${check.ok ? 'every counted decision verifies' : 'VERIFICATION FAILED'} (keys from ${dir})`);
  return check.ok ? Exit.OK : Exit.REFUSED;
}

const facts = (r: EvidenceRecord): Array<[string, string]> => [
  ['workflow', `${r.workflowId} (run ${r.runId}, ${r.workflowType})`],
  ['status', `${r.status}${r.outcome ? ` ${r.outcome}` : ''}${r.failure ? `: ${r.failure}` : ''}`],
  ['started', r.startedAt],
  ['closed', r.closedAt ?? '-'],
  ['requester', r.requester],
  ['approvers', `${r.requiredApprovals} of ${r.approvers.join(', ')}`],
  ['signatures', r.signedApprovals ? 'required (Ed25519)' : 'OFF'],
  ['alias', r.alias ?? '-'],
  ['KMS key', r.kmsKeyArn ?? '-'],
  ['HSM key', r.hsmKey ? `${r.hsmKey.label} (id ${r.hsmKey.keyId}, KCV ${r.hsmKey.kcv})` : '-'],
  ['wrapping', r.wrappingAlgorithm ?? r.subject?.wrappingAlgorithm ?? '-'],
  ['expiration', r.subject ? `${r.subject.expirationModel}${r.subject.validTo ? ` at ${r.subject.validTo}` : ''}` : '-'],
  ['refreshes', String(r.tokenRefreshes)],
  ['imported', r.importedAt ?? '-'],
  ['verified', r.verification ? JSON.stringify(r.verification) : '-'],
];

function text(r: EvidenceRecord): string {
  const out = facts(r).map(([k, v]) => `  ${k.padEnd(11)} ${v}`);
  for (const d of r.decisions) {
    out.push(`  decision    ${d.decision} by ${d.approver} at ${d.receivedAt} (${d.via}${d.counted ? '' : ', not counted'})${d.comment ? `: ${d.comment}` : ''}`);
  }
  out.push(...(r.signatureCheck?.lines ?? []).map((l) => `  ${l}`));
  return out.join('\n');
}

function markdown(r: EvidenceRecord): string {
  const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
  return [
    `# Evidence: ${r.workflowId}`,
    '',
    '| | |',
    '|---|---|',
    ...facts(r).map(([k, v]) => `| ${k} | ${cell(v)} |`),
    '',
    '## Decisions',
    '',
    '| approver | decision | received | via | counted | comment | signed at | signature |',
    '|---|---|---|---|---|---|---|---|',
    ...r.decisions.map((d) =>
      `| ${cell(d.approver)} | ${d.decision} | ${d.receivedAt} | ${d.via} | ${d.counted ? 'yes' : 'no'} | ${cell(d.comment ?? '')} | ${d.signed?.statement.signedAt ?? '-'} | ${d.signed ? `\`${d.signed.signature}\`` : 'unsigned'} |`,
    ),
    '',
    '## Signature check',
    '',
    ...(r.signatureCheck?.lines ?? []).map((l) => `- ${cell(l)}`),
    '',
    'Re-verify offline: `byok evidence <id> --json > record.json`, then `byok evidence verify record.json --keys DIR`.',
  ].join('\n');
}

export const evidenceCommands: Record<string, Command> = {
  evidence: { summary: 'audit record of a request, and its offline verification', usage: EVIDENCE_USAGE, run: evidenceCommand },
};
