/** What every host-side operation needs: the state directory, the clock, and this host's probe (probed at most once). */
import type { Fingerprint } from '../format/license.js';
import { fingerprintOf } from '../hardware/fingerprint.js';
import { probeHost, type HostProbe, type ProbeOptions } from '../hardware/probe.js';
import { StateDir } from '../state/home.js';
import type { TpmOptions } from '../tpm/tools.js';

export interface HostOptions {
  /** state directory; default MLIC_HOME or ~/.config/mlic */
  stateDir?: string;
  now?: Date;
  /** how to probe this host (library callers and tests; the CLI always probes the real host) */
  probe?: ProbeOptions;
  /** a probe result to use instead of probing */
  hostProbe?: HostProbe;
  /** the TPM to use (its TCTI); default MLIC_TPM, else /dev/tpmrm0 */
  tpm?: TpmOptions;
}

export class HostContext {
  readonly state: StateDir;
  private probed: Promise<HostProbe> | undefined;

  constructor(private readonly o: HostOptions) {
    this.state = StateDir.fromEnv(process.env, o.stateDir);
    if (o.tpm) this.state.tpm = o.tpm;
  }

  get tpm(): TpmOptions {
    return this.o.tpm ?? {};
  }

  now(): Date {
    return this.o.now ?? new Date();
  }

  probe(): Promise<HostProbe> {
    this.probed ??= this.o.hostProbe ? Promise.resolve(this.o.hostProbe) : probeHost(this.o.probe ?? {});
    return this.probed;
  }

  /** This host's fingerprint under a licence's or request's salt. */
  async fingerprint(saltHex: string): Promise<Fingerprint> {
    return fingerprintOf(await this.probe(), Buffer.from(saltHex, 'hex'));
  }
}
