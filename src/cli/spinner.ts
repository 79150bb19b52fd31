/**
 * A spinner on stderr for waits without a byte count (unlocking a key, probing hardware), only
 * when stderr is a terminal and not with --json. ora is loaded only then, so it costs nothing at
 * start-up and in scripts.
 */
export interface Spinner {
  stop(finalText?: string): void;
}

const none: Spinner = { stop() {} };

export async function spinner(text: string, json: boolean): Promise<Spinner> {
  if (json || !process.stderr.isTTY || process.env.NO_COLOR !== undefined || process.env.CI) return none;
  const { default: ora } = await import('ora');
  const s = ora({ text, stream: process.stderr, discardStdin: false }).start();
  return {
    stop(finalText) {
      if (finalText) s.succeed(finalText);
      else s.stop();
    },
  };
}

/** This host's probe (nvidia-smi can take a second or two on a GPU server), with a spinner meanwhile. */
export async function probeWithSpinner(json: boolean): Promise<import('../hardware/probe.js').HostProbe> {
  const { probeHost } = await import('../hardware/probe.js');
  const spin = await spinner('probing this host (nvidia-smi, /etc, /sys)', json);
  try {
    return await probeHost();
  } finally {
    spin.stop();
  }
}
