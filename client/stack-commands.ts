// `byok stack up|down|status`: the local stack for trying the tool and for its tests.
import { stackDown, stackOptionsFromEnv, stackStatus, stackUp } from '../scripts/stack';
import { CliError, Exit, parse, showUsage, type Command } from './command';

const STACK_USAGE = `usage: byok stack up|down|status

  up       start (or reuse) the Temporal dev server with its Web UI, local-kms, a SoftHSM2
           token, the codec server and the worker; payloads are encrypted with a demo codec
           key (made on the first up, <dir>/codec/codec.keys); safe to run twice
  down     stop what "up" started; data is kept
  status   show each component

Environment: BYOK_STACK_DIR (default .byok), BYOK_TEMPORAL_PORT (7233), BYOK_UI_PORT (8233),
BYOK_KMS_PORT (4599), BYOK_CODEC_PORT (8081), BYOK_METRICS_PORT (worker's Prometheus endpoint; default none),
BYOK_TOKEN_LABEL (byok-demo), BYOK_DEMO_PIN / BYOK_DEMO_SO_PIN (demo token only).`;

async function stackCommand(args: string[]): Promise<number> {
  const { values: v, positionals } = parse(args, {});
  if (v.help || positionals.length !== 1) return showUsage(STACK_USAGE, v.help ? Exit.OK : Exit.USAGE);
  const opts = stackOptionsFromEnv();
  switch (positionals[0]) {
    case 'up': {
      const info = await stackUp(opts);
      console.log(`stack up in ${opts.dir}`);
      console.log(`  Temporal  ${info.temporalAddress} (namespace ${info.namespace})`);
      console.log(`  Web UI    ${info.uiUrl}`);
      console.log(`  local-kms ${info.kmsEndpoint}`);
      console.log(`  SoftHSM2  token "${info.tokenLabel}" (${info.softhsmConf})`);
      if (info.codecServerUrl) console.log(`  codec     ${info.codecServerUrl} (payloads encrypted; key file ${info.env.BYOK_CODEC_KEY_FILE})`);
      if (info.metricsUrl) console.log(`  metrics   ${info.metricsUrl}`);
      console.log(`  logs      ${info.logsDir}`);
      return Exit.OK;
    }
    case 'down':
      await stackDown(opts);
      console.log(`stack down (data kept in ${opts.dir})`);
      return Exit.OK;
    case 'status': {
      const rows = await stackStatus(opts);
      for (const r of rows) console.log(`${r.component.padEnd(10)} ${r.running ? 'running' : 'stopped'}  ${r.pid ?? ''}  ${r.detail}`);
      return rows.every((r) => r.running) ? Exit.OK : Exit.ERROR;
    }
    default:
      throw new CliError(`stack: unknown action "${positionals[0]}"; expected up, down or status`, Exit.USAGE);
  }
}

export const stackCommands: Record<string, Command> = {
  stack: { summary: 'run the local stack: Temporal dev server, local-kms, SoftHSM2 token, worker', usage: STACK_USAGE, run: stackCommand },
};
