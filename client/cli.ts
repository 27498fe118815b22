// The `byok` command line. Each concern's commands live in their own file; this one dispatches.
import { withCodecHint } from '../codec/data-converter';
import { codecCommands } from './codec-commands';
import { CliError, Exit, showUsage, type Command } from './command';
import { decisionCommands } from './decision-commands';
import { evidenceCommands } from './evidence-commands';
import { importCommands } from './import-commands';
import { keygenCommands } from './keygen-commands';
import { lifecycleCommands } from './lifecycle-commands';
import { opsCommands } from './ops-commands';
import { rotateCommands } from './rotate-commands';
import { scheduleCommands } from './schedule-commands';
import { stackCommands } from './stack-commands';

const COMMANDS: Record<string, Command> = {
  ...importCommands,
  ...decisionCommands,
  ...rotateCommands,
  ...lifecycleCommands,
  ...scheduleCommands,
  ...keygenCommands,
  ...evidenceCommands,
  ...opsCommands,
  ...stackCommands,
  ...codecCommands,
};

const MAIN_USAGE = `usage: byok <command> [options]

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(13)} ${c.summary}`)
  .join('\n')}

Run "byok <command> --help" for a command's options.
Temporal is reached through TEMPORAL_ADDRESS (default 127.0.0.1:7233), TEMPORAL_NAMESPACE,
TEMPORAL_API_KEY and TEMPORAL_TLS_*; BYOK_UI_URL sets the Web UI base for links.

Exit codes: 0 ok, 1 error, 2 bad usage or input, 3 refused (e.g. not an approver),
4 rejected, 5 approval expired, 6 import failed.`;

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  try {
    if (name === undefined) return showUsage(MAIN_USAGE, Exit.USAGE);
    if (name === '-h' || name === '--help' || name === 'help') return showUsage(MAIN_USAGE);
    const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!command) throw new CliError(`unknown command "${name}"; run "byok --help"`, Exit.USAGE);
    return await command.run(args);
  } catch (err) {
    console.error(`byok: ${withCodecHint(err instanceof Error ? err.message : String(err))}`);
    return err instanceof CliError ? err.code : Exit.ERROR;
  }
}
