/** The mlic command line: one commander program, one catch, the only process.exit. */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { MlicError } from '../errors.js';
import { cleanupTempFilesSync, signalTakenOver } from '../util/cleanup.js';
import { makeCtx, printError, type Ctx } from './output.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
const wantsJson = process.argv.includes('--json');

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

type Action = (ctx: Ctx, ...args: any[]) => Promise<void | number>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A command may set the process's exit status (mlic run passes on its child's). */
let commandStatus = 0;

/** Wraps a lazily imported command so each one gets a Ctx built from its own --json flag. */
function act(load: () => Promise<object>, fn = 'run') {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const opts = cmd.opts() as { json?: boolean };
    const ctx = makeCtx(Boolean(opts.json));
    const mod = await load();
    const r = await (mod as Record<string, Action>)[fn]!(ctx, ...args.slice(0, -2), opts);
    if (typeof r === 'number') commandStatus = r;
  };
}

const program = new Command('mlic')
  .description('Ship proprietary AI models as encrypted, signed bundles with hardware-bound licenses.')
  .version(pkg.version, '-V, --version')
  .enablePositionalOptions()
  .exitOverride()
  .configureOutput({
    writeErr: (s) => {
      if (!wantsJson) process.stderr.write(s);
    },
    // Errors are printed once, by printError below (with their code and exit status).
    outputError: () => undefined,
  });

const json = () => new Option('--json', 'print exactly one JSON object on stdout');

program
  .command('keygen')
  .description("make the vendor's identity: an Ed25519 signing key and a master secret (NAME.key, 0600) and a minisign public key (NAME.pub)")
  .option('-o, --output <dir>', 'directory to write the key files to (created 0700 if missing)', '.')
  .option('--name <name>', 'base name of the key files', 'vendor')
  .option('--type <type>', 'ed25519 (the vendor key: NAME.key, NAME.pub) or ecdsa-p256 / -p384 / -p521 (for OpenSSF Model Signing: NAME.pem, NAME.pub.pem)', 'ed25519')
  .option('--unencrypted', 'store the secret key without a passphrase (for secrets stores)')
  .option('--passphrase-file <file>', 'read the passphrase from the first line of FILE (else MLIC_PASSPHRASE, else a prompt)')
  .option('--force', 'overwrite existing key files')
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic keygen --name acme\n  $ MLIC_PASSPHRASE=... mlic keygen -o keys/ --name acme\n  $ mlic keygen --name ci --unencrypted   # then store ci.key in a CI secret as MLIC_SECRET_KEY\n  $ mlic keygen --type ecdsa-p256 --name oms --unencrypted   # oms.pem / oms.pub.pem for mlic sign --oms')
  .action(async (opts, cmd) => act(() => import('./commands/keygen.js'))(opts, cmd));

program
  .command('pack')
  .description('encrypt and sign a model file, directory or tar archive (.tar, .tar.gz, .tgz) into one bundle (NAME-VERSION.mlb)')
  .argument('[path]', 'model file, directory, or tar archive of them (ONNX, safetensors, GGUF, companions)')
  .requiredOption('--name <name>', 'model name')
  .requiredOption('--version <semver>', 'model version (semantic version, e.g. 2.1.0)')
  .option('--key <file>', 'vendor secret key (else MLIC_SECRET_KEY)')
  .option('-o, --output <file>', 'bundle to write (default NAME-VERSION.mlb)')
  .option('--release-date <date>', 'release date recorded in the signed manifest (default now)')
  .option('--component <name=path>', 'add a named component: a file, directory or tar archive (repeatable)', collect)
  .option('--chunk-size <bytes>', 'encryption chunk size, 1MiB to 64MiB (default 1MiB)')
  .option('--passphrase-file <file>', 'passphrase for the secret key')
  .option('--force', 'overwrite an existing bundle')
  .addOption(json())
  .addHelpText('after', '\nArchives: a path named .tar, .tar.gz or .tgz is read as a tar archive (POSIX ustar/pax or GNU, plain or gzip),\nnever extracted to disk; its files are packed exactly as the extracted directory would be (same paths, formats\nand checks) and refused where a directory is (unsafe names, devices, links pointing out of it). Links inside a\nplain .tar are followed; a compressed archive with links is refused. To pack such a file as one opaque file,\nput it in a directory and pack the directory.\n\nExamples:\n  $ mlic pack model.onnx --name resnet --version 2.1.0 --key vendor.key\n  $ mlic pack ./llama-dir --name llama --version 1.0.0 -o llama.mlb\n  $ mlic pack densenet_onnx.tgz --name densenet --version 1.0.0   # a Triton model repository, as downloaded\n  $ mlic pack --component detector=det.onnx --component ocr=ocr.tar.gz --name pipeline --version 1.0.0')
  .action(async (path, opts, cmd) => act(() => import('./commands/pack.js'))(path, opts, cmd));

program
  .command('inspect')
  .description('show a bundle\'s manifest (model, version, files, vendor key) without any secret')
  .argument('<bundle>', 'bundle file')
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic inspect resnet-2.1.0.mlb\n  $ mlic inspect resnet-2.1.0.mlb --json | jq .result.manifest.files')
  .action(async (bundle, opts, cmd) => act(() => import('./commands/inspect.js'))(bundle, opts, cmd));

program
  .command('verify')
  .description("verify bundles (vendor signature and every ciphertext digest), minisign signatures of any file, or OMS model signatures (--oms)")
  .argument('<files...>', 'bundles or signed files (or, with --oms, one model directory or file)')
  .option('--pub <file>', 'public key: the vendor\'s minisign key, or a PEM key with --oms')
  .option('--sig <file>', 'signature file (default FILE.minisig; with --oms, model.sig)')
  .option('--oms', 'verify an OpenSSF Model Signing (OMS v1.0) signature of a model directory')
  .option('--ignore <path>', 'with --oms: a path not covered by the signature (repeatable)', collect)
  .addOption(json())
  .addHelpText(
    'after',
    '\nExit status: 0 valid; 1 tampered or wrong key (SIGNATURE_INVALID, DIGEST_MISMATCH, KEY_MISMATCH, ...); 2 not a bundle nor signed, or bad input.\n\nExamples:\n  $ mlic verify resnet-2.1.0.mlb --pub vendor.pub\n  $ mlic verify model.onnx --pub vendor.pub            # checks model.onnx.minisig, prints the trusted comment\n  $ mlic verify --oms ./model --sig model.sig --pub key.pem',
  )
  .action(async (files, opts, cmd) => {
    if (!opts.pub) throw new MlicError('USAGE', "required option '--pub <file>' not specified");
    return act(() => import('./commands/verify.js'))(files, opts, cmd);
  });

program
  .command('sign')
  .description("sign files with the vendor key in minisign's format (FILE.minisig), or a model directory with OMS (--oms)")
  .argument('<files...>', 'files to sign (or, with --oms, one model directory or file)')
  .option('--key <file>', 'vendor secret key (else MLIC_SECRET_KEY); with --oms, an ECDSA PEM private key')
  .option('--passphrase-file <file>', 'passphrase for the secret key')
  .option('--comment <text>', 'trusted comment (default: timestamp, file name, key id)')
  .option('--legacy', "legacy non-prehashed signature ('Ed'), as signify verifies")
  .option('-o, --output <file>', 'signature file (default FILE.minisig; with --oms, model.sig)')
  .option('--oms', 'write an OpenSSF Model Signing (OMS v1.0) Sigstore bundle for a model directory')
  .option('--ignore <path>', 'with --oms: a path to leave out of the signature (repeatable)', collect)
  .option('--force', 'replace an existing signature file')
  .addOption(json())
  .addHelpText(
    'after',
    '\nExamples:\n  $ mlic sign resnet-2.1.0.mlb --key vendor.key          # writes resnet-2.1.0.mlb.minisig\n  $ MLIC_SECRET_KEY="$(cat ci.key)" mlic sign dist/*.mlb\n  $ mlic sign --oms ./model --key oms-key.pem -o model.sig',
  )
  .action(async (files, opts, cmd) => act(() => import('./commands/sign.js'))(files, opts, cmd));

const home = () => new Option('--home <dir>', "mlic's state directory (default MLIC_HOME or ~/.config/mlic)");

program
  .command('fingerprint')
  .description('show what identifies this host (GPUs, machine id, DMI, CPU, NICs); each leaves the host only as a salted hash')
  .option('--compare <file>', 'compare this host with an activation request or licence: which components changed')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic fingerprint\n  $ mlic fingerprint --compare request.json')
  .action(async (opts, cmd) => act(() => import('./commands/fingerprint.js'))(opts, cmd));

program
  .command('activate')
  .description("make this host's activation request (--request), or verify and install a licence from the vendor")
  .argument('[licence]', 'licence file from the vendor')
  .option('--request', "create (or reuse) this host's key pair and write an activation request")
  .option('-o, --output <file>', 'where to write the request', 'request.json')
  .option('--region <code>', 'declare the region this host is in (ISO 3166 country, e.g. DE)')
  .option('--customer <ref>', 'your customer reference, for the vendor')
  .option('--force', 'overwrite an existing request file')
  .option('--online <url>', "activate online: send this host's request to the vendor's licence server and install the licence it returns")
  .option('--license-key <key>', 'with --online: the licence key from the vendor (MLIC-XXXXX-...)')
  .option('--tpm [mode]', "bind the host key to this host's TPM 2.0 and attest the request: on (the default with --tpm), auto (when a TPM works here, else the file key, saying so), off; a TPM-bound host always attests (MLIC_TPM names the TPM, default /dev/tpmrm0)")
  .option('--pcrs <list>', 'with --tpm: the PCRs to quote (default sha256:0,1,2,3,7)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic activate --request --region DE -o request.json   # send request.json to the vendor\n  $ mlic activate --request --tpm -o request.json         # the host key bound to this host\'s TPM\n  $ mlic activate customer.lic\n  $ mlic activate --online https://licences.acme.example --license-key MLIC-7K2QD-...')
  .action(async (lic, opts, cmd) => act(() => import('./commands/activate.js'))(lic, opts, cmd));

program
  .command('deactivate')
  .description("free this host's slot on the vendor's licence server and remove its licence (online, or as a signed file for the vendor)")
  .argument('[licence-id]', 'the installed licence to deactivate (default: the only one)')
  .option('--online [url]', 'tell the licence server now (default: the server this host activated with)')
  .option('-o, --output <file>', 'offline: write the signed deactivation here for the vendor (default deactivation.json)')
  .option('--force', 'overwrite an existing output file')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic deactivate --online\n  $ mlic deactivate 0123456789abcdef0123456789abcdef -o deactivation.json   # air-gapped: send the file to the vendor')
  .action(async (id, opts, cmd) => act(() => import('./commands/deactivate.js'))(id, opts, cmd));

program
  .command('leases')
  .description('the floating-seat leases this host holds from the licence server (licences with floating seats take one on first use)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic leases --json')
  .action(async (opts, cmd) => act(() => import('./commands/leases.js'))(opts, cmd));

const revocations = program.command('revocations').description('vendor-signed lists of revoked licences: a listed licence is refused (LICENSE_REVOKED)');
revocations
  .command('sync')
  .description("fetch the licence server's revocation list and install it")
  .option('--server <url>', 'the licence server (default: the one this host activated with)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic revocations sync\n  $ mlic revocations sync --server https://licences.acme.example')
  .action(async (opts, cmd) => act(() => import('./commands/revocations.js'), 'sync')(opts, cmd));
revocations
  .command('install')
  .description('install a revocation list from a file (air-gapped hosts); an older list than the installed one is refused')
  .argument('<file>', 'the list (GET /v1/revocations of the licence server)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic revocations install revocations.json')
  .action(async (file, opts, cmd) => act(() => import('./commands/revocations.js'), 'install')(file, opts, cmd));
revocations
  .command('list')
  .description('the installed revocation lists')
  .addOption(home())
  .addOption(json())
  .action(async (opts, cmd) => act(() => import('./commands/revocations.js'), 'list')(opts, cmd));

const trust = program.command('trust').description('manage the vendor keys this host trusts');
trust
  .command('add')
  .description("trust a vendor's public key (minisign format); prints its fingerprint to compare with the vendor's")
  .argument('<pub>', 'vendor public key file')
  .option('--replace', 'replace a different key already trusted under the same key id')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic trust add acme.pub\n  $ MLIC_HOME=/etc/mlic mlic trust add acme.pub')
  .action(async (pub, opts, cmd) => act(() => import('./commands/trust.js'), 'add')(pub, opts, cmd));
trust
  .command('list')
  .description('list trusted vendor keys')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic trust list --json')
  .action(async (opts, cmd) => act(() => import('./commands/trust.js'), 'list')(opts, cmd));
trust
  .command('remove')
  .description('stop trusting a vendor key')
  .argument('<keyid>', 'key id (16 hex digits)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic trust remove 59C4CD4E53A7C3AA')
  .action(async (id, opts, cmd) => act(() => import('./commands/trust.js'), 'remove')(id, opts, cmd));

program
  .command('licenses')
  .description('list the installed licences and what each grants')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', "\nExamples:\n  $ mlic licenses\n  $ mlic licenses --json | jq '.result.licenses[].status'")
  .action(async (opts, cmd) => act(() => import('./commands/licenses.js'))(opts, cmd));

/** The terms a licence grants, shared by `license issue` and `admin entitlement create`. */
function termsOptions(c: Command, versionsHelp: string): Command {
  return c
    .option('--versions <range>', versionsHelp)
    .option('--rolling', 'every version released while the licence is valid')
    .option('--updates-until <date>', 'maintenance window: versions released up to DATE work for good, later ones do not')
    .option('--not-before <date>', 'start of validity (default now)')
    .option('--expires <date>', 'end of validity')
    .option('--days <n>', 'valid for N days from --not-before (else from now)')
    .option('--perpetual', 'no end of validity (one of --days, --expires or --perpetual is required)')
    .option('--grace <duration>', 'grace period after expiry (e.g. 72h, 7d)')
    .option('--clock-tolerance <duration>', 'how far the clock may go back before CLOCK_TAMPERED (default 1h)')
    .option('--tier <name>', 'tier, e.g. pro')
    .option('--feature <name>', 'licensed feature (repeatable)', collect)
    .option('--component <name>', 'licensed component of a multi-model bundle (repeatable; default all)', collect)
    .option('--match <policy>', 'hardware match: all, most, any, or K (k of n); default all')
    .option('--meter <spec>', 'quota METRIC=LIMIT/PERIOD[,overage=N%|record|refuse][,scope=fleet|host] (repeatable)', collect)
    .option('--region <code>', 'allowed region or country (repeatable; EU and EEA are groups)', collect)
    .option('--require-watermark', 'outputs must be watermarked (e.g. a free tier)');
}

const license = program.command('license').description("the vendor's licence tools");
termsOptions(
  license
    .command('issue')
    .description("turn a host's activation request into a signed licence (or --unbound)")
    .option('--key <file>', 'vendor secret key (else MLIC_SECRET_KEY)')
    .option('--passphrase-file <file>', 'passphrase for the secret key')
    .option('--request <file>', "the host's activation request")
    .option('--unbound', 'a licence tied to no host (its keys travel in the clear: a bearer licence)')
    .requiredOption('--model <name>', 'model name'),
  "versions: a range ('^2', '>=2.1 <3') or a pin ('=2.1.0', needs --bundle)",
)
  .option('--bundle <file>', 'for a pin: the bundle it pins (its key alone is granted)')
  .option('--marked', 'for the bundles marked for this licence alone (mlic mark): its keys open no other bundle')
  .option('--tpm-ca <dir>', "trusted TPM manufacturers' CA certificates: a TPM request's endorsement key certificate must chain to one (else MLIC_TPM_CA)")
  .option('--require-tpm', 'refuse a request without TPM attestation (needs --tpm-ca)')
  .option('--pcr-policy <file>', 'PCR values a TPM request must show (JSON: {"sha256": {"7": ["hex", ...]}}); make one with mlic license pcr-policy')
  .option('--max-request-age <duration>', "how old a TPM request's quote may be (default 7d)")
  .option('--customer <ref>', 'customer reference')
  .option('-o, --output <file>', 'licence file to write')
  .option('--force', 'overwrite an existing licence file')
  .addOption(json())
  .addHelpText(
    'after',
    "\nExamples:\n  $ mlic license issue --key vendor.key --request request.json --model resnet --versions '^2' --days 365 -o acme.lic\n  $ mlic license issue --key vendor.key --request r.json --model resnet --versions '=2.1.0' --bundle resnet-2.1.0.mlb -o pin.lic\n  $ mlic license issue --key vendor.key --request r.json --model resnet --updates-until 2027-06-30 --match most --feature batch -o m.lic\n  $ mlic license issue --key vendor.key --unbound --model resnet --rolling --expires 2027-01-01 -o trial.lic\n  $ mlic license issue --key vendor.key --request r.json --require-tpm --tpm-ca tpm-cas/ --model resnet --versions '^2' --days 365 -o tpm.lic",
  )
  .action(async (opts, cmd) => act(() => import('./commands/license.js'), 'issue')(opts, cmd));
license
  .command('pcr-policy')
  .description("a PCR policy for --pcr-policy from a known-good host's TPM activation request (its quoted PCR values)")
  .requiredOption('--request <file>', 'an activation request made with --tpm on a host in a trusted state')
  .option('-o, --output <file>', 'policy file to write', 'pcr-policy.json')
  .option('--max-request-age <duration>', "how old the request's quote may be (default 365d)")
  .option('--force', 'overwrite an existing policy file')
  .addOption(json())
  .addHelpText('after', "\nExamples:\n  $ mlic license pcr-policy --request golden-host.json -o pcr-policy.json\n  $ mlic license issue --key vendor.key --request r.json --tpm-ca tpm-cas/ --pcr-policy pcr-policy.json --model resnet --versions '^2' --days 365")
  .action(async (opts, cmd) => act(() => import('./commands/license.js'), 'pcrPolicy')(opts, cmd));
license
  .command('inspect')
  .description('show every field of a licence and whether it verifies')
  .argument('<file>', 'licence file')
  .option('--pub <file>', 'verify with this vendor public key (default: the trusted keys)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic license inspect acme.lic --pub vendor.pub\n  $ mlic license inspect acme.lic --json')
  .action(async (file, opts, cmd) => act(() => import('./commands/license.js'), 'inspect')(file, opts, cmd));

program
  .command('mark')
  .description("write a bundle whose weights carry one licence's fingerprint (the vendor's side of leak tracing)")
  .argument('<bundle>', 'the common bundle (as packed)')
  .requiredOption('--license <file>', 'a licence issued with --marked: the marked bundle opens with it alone')
  .option('--key <file>', 'vendor secret key (else MLIC_SECRET_KEY)')
  .option('--passphrase-file <file>', 'passphrase for the secret key')
  .option('-o, --output <file>', 'bundle to write (default BUNDLE-LICENCE8.mlb beside the bundle)')
  .option('--strength <alpha>', 'relative change of each marked weight (default 0.0005)')
  .option('--force', 'overwrite an existing bundle')
  .addOption(json())
  .addHelpText(
    'after',
    '\nThe fingerprint goes into the float matrices and convolution kernels (F32, F16, BF16) of safetensors, ONNX\nand GGUF files; biases, norms, embeddings, small and quantized tensors are left as they are. See docs/TRACING.md.\n\nExamples:\n  $ mlic license issue --key vendor.key --request acme.json --model resnet --versions \'^2\' --days 365 --marked -o acme.lic\n  $ mlic mark resnet-2.1.0.mlb --license acme.lic --key vendor.key -o resnet-2.1.0-acme.mlb',
  )
  .action(async (bundle, opts, cmd) => act(() => import('./commands/mark.js'), 'mark')(bundle, opts, cmd));

program
  .command('trace')
  .description('name the licence whose fingerprint a leaked model carries, or say that none is implicated')
  .argument('<suspect>', 'the suspect model: a file, a directory or a tar archive (safetensors, ONNX, GGUF)')
  .requiredOption('--original <bundle>', 'the common bundle it may come from (or the original model files)')
  .option('--licenses <dir>', 'a directory of the licences you issued (those for marked bundles are the candidates)')
  .option('--server <url>', "also the licences this licence server issued for marked bundles of the original's model (its admin API)")
  .option('--token <token>', 'with --server: admin token (else MLIC_ADMIN_TOKEN, which keeps it out of the process list)')
  .option('--key <file>', 'vendor secret key (else MLIC_SECRET_KEY)')
  .option('--passphrase-file <file>', 'passphrase for the secret key')
  .option('--top <n>', 'candidates to list (default 5)')
  .addOption(json())
  .addHelpText(
    'after',
    '\nThe candidates come from --licenses, --server or both (at least one); each must verify with the vendor key.\n\nExit status: 0 a licence is implicated (p-value times the number of candidates below 1e-9); 1 none is\n(NOT_IMPLICATED), or the suspect matches nothing of the original (TRACE_NO_MATCH); 2 bad input.\n\nExamples:\n  $ mlic trace ./leaked-model --original resnet-2.1.0.mlb --key vendor.key --licenses ./issued\n  $ mlic trace leaked.safetensors --original resnet-2.1.0.mlb --licenses ./issued --json\n  $ export MLIC_ADMIN_TOKEN=mlat_...\n  $ mlic trace ./leaked-model --original resnet-2.1.0.mlb --key vendor.key --server https://licences.acme.example',
  )
  .action(async (suspect, opts, cmd) => act(() => import('./commands/mark.js'), 'traceCmd')(suspect, opts, cmd));

program
  .command('unpack')
  .description('decrypt a bundle into a directory, if an installed licence allows it here and now')
  .argument('<bundle>', 'bundle file')
  .requiredOption('-o, --output <dir>', 'directory to write the model files to (created 0700 if missing)')
  .option('--feature <name>', 'the feature this use needs')
  .option('--component <name>', 'only these components (repeatable)', collect)
  .option('--force', 'overwrite existing files')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic unpack resnet-2.1.0.mlb -o /srv/models/resnet')
  .action(async (bundle, opts, cmd) => act(() => import('./commands/unpack.js'))(bundle, opts, cmd));

program
  .command('run')
  .description('decrypt into private memory-backed storage, run a command on it (MLIC_MODEL_DIR, {model}), then wipe it')
  .argument('<bundle>', 'bundle file')
  .argument('<command...>', 'the command and its arguments, after --')
  .option('--feature <name>', 'the feature this use needs')
  .option('--component <name>', 'only these components (repeatable)', collect)
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic run resnet-2.1.0.mlb -- python serve.py --model {model}/model.onnx\n  $ mlic run llm.mlb -- sh -c \'ls "$MLIC_MODEL_DIR"\'')
  .action(async (bundle, command, opts, cmd) => act(() => import('./commands/run.js'))(bundle, command, opts, cmd));

const licSel = (c: Command) =>
  c
    .option('--bundle <file>', 'the bundle whose installed licence to use')
    .option('--license <file>', 'a licence file instead of the installed ones')
    .option('--model <name>', 'the installed licence for this model')
    .addOption(home());

const meter = program.command('meter').description('metered usage against the licence\'s quotas (for runtimes that are not Node)');
licSel(meter.command('status').description('usage of each metered metric in its current period'))
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic meter status --model resnet\n  $ mlic meter status --bundle resnet-2.1.0.mlb --json')
  .action(async (opts, cmd) => act(() => import('./commands/meter.js'), 'status')(opts, cmd));
licSel(meter.command('consume').description('count usage if the licence allows it (exit 1 QUOTA_EXCEEDED, FEATURE_NOT_LICENSED, ...)'))
  .option('--feature <name>', 'the feature this use needs')
  .requiredOption('--metric <name>', 'metric, e.g. inferences, tokens, pages')
  .requiredOption('--quantity <n>', 'how much')
  .option('--durability <mode>', 'strict (fsync, default for this command) or batched')
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic meter consume --model resnet --feature batch --metric inferences --quantity 32')
  .action(async (opts, cmd) => act(() => import('./commands/meter.js'), 'consume')(opts, cmd));
licSel(meter.command('serve').description('answer validate requests over a Unix socket, one JSON object per line (docs/USAGE.md)'))
  .requiredOption('--socket <path>', 'Unix socket to listen on (created 0600)')
  .option('--durability <mode>', 'batched (default) or strict')
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic meter serve --model resnet --socket /run/mlic.sock &\n  $ python3 examples/mlic_client.py /run/mlic.sock')
  .action(async (opts, cmd) => act(() => import('./commands/meter.js'), 'serveCmd')(opts, cmd));

const watermark = program.command('watermark').description("invisible marks in model outputs that name the licence (docs/WATERMARK.md)");
licSel(watermark.command('embed').description("mark an image (PNG, JPEG, WebP, TIFF) with the licence's watermark, on the licensed host"))
  .argument('<image>', 'the image to mark')
  .requiredOption('-o, --output <file>', 'the marked image (same format as the input)')
  .option('--strength <grey levels>', `the mark's RMS in grey levels (default 2.4: PSNR about 40.5 dB)`)
  .option('--quality <1-100>', 'JPEG, WebP: the quality to write at (default 95)')
  .option('--force', 'overwrite the output')
  .addOption(json())
  .addHelpText('after', '\nThe licence must carry a watermark key (issued with --require-watermark); each marked output\'s hash and payload go to the audit log.\n\nExamples:\n  $ mlic watermark embed render.png -o render-marked.png --model sdxl-lite\n  $ mlic watermark embed photo.jpg -o out.jpg --license acme.lic --json')
  .action(async (image, opts, cmd) => act(() => import('./commands/watermark.js'), 'embed')(image, opts, cmd));
watermark
  .command('detect')
  .description("name the licence whose watermark an output carries (images; text as token ids or with its tokenizer), or say none does")
  .argument('<file...>', 'images (PNG, JPEG, WebP, TIFF), token ids (a JSON array) or text files')
  .option('--licenses <dir>', 'a directory of the licences you issued (those issued with --require-watermark are the candidates)')
  .option('--server <url>', 'also the licences this licence server issued with a watermark key (its admin API)')
  .option('--token <token>', 'with --server: admin token (else MLIC_ADMIN_TOKEN, which keeps it out of the process list)')
  .option('--key <file>', 'vendor secret key (else MLIC_SECRET_KEY)')
  .option('--passphrase-file <file>', 'passphrase for the secret key')
  .option('--tokenizer <file>', "for text: the model's tokenizer.json (Hugging Face WordLevel)")
  .option('--top <n>', 'candidates listed per file in --json (default 3)')
  .addOption(json())
  .addHelpText(
    'after',
    '\nThe candidates come from --licenses, --server or both (at least one); each must verify with the vendor key.\n\nExit status: 0 every file names a licence (p-value times the number of candidates below 1e-9); 1 one\ndoes not (WATERMARK_NOT_FOUND); 2 bad input (IMAGE_INVALID, IMAGE_TOO_SMALL, TEXT_TOO_SHORT, TOKENIZER_MISMATCH, ...).\n\nExamples:\n  $ mlic watermark detect found-online.jpg --key vendor.key --licenses ./issued\n  $ mlic watermark detect reply.txt --tokenizer tokenizer.json --licenses ./issued --json',
  )
  .action(async (files, opts, cmd) => act(() => import('./commands/watermark.js'), 'detect')(files, opts, cmd));

const usage = program.command('usage').description('signed usage reports for billing');
licSel(usage.command('report').description('write the signed usage report of one month'))
  .option('--period <month>', 'the month, e.g. 2026-11 (default: this month)')
  .option('-o, --output <file>', 'report file')
  .option('--force', 'overwrite an existing report')
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic usage report --model resnet --period 2026-11 -o report-2026-11.json')
  .action(async (opts, cmd) => act(() => import('./commands/usage.js'), 'report')(opts, cmd));
usage
  .command('verify')
  .description("the vendor's check of a usage report: host signature, licence binding, continuity; prints billable totals")
  .argument('<report>', 'usage report')
  .requiredOption('--license <file>', 'the licence it is for')
  .option('--previous <file>', 'the previous report, to check there is no gap and no rewind')
  .option('--pub <file>', 'also verify the licence with the vendor public key')
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic usage verify report-2026-11.json --license acme.lic --pub vendor.pub --previous report-2026-10.json')
  .action(async (file, opts, cmd) => act(() => import('./commands/usage.js'), 'verify')(file, opts, cmd));

usage
  .command('post')
  .description("send usage reports to the vendor's licence server (which checks and stores them for billing)")
  .argument('<reports...>', 'usage report files, oldest month first')
  .option('--server <url>', 'the licence server (default: the one this host activated with)')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic usage report --period 2026-11 -o report-2026-11.json && mlic usage post report-2026-11.json')
  .action(async (files, opts, cmd) => act(() => import('./commands/usage.js'), 'post')(files, opts, cmd));

const auditCmd = program.command('audit').description("this host's tamper-evident audit log of licence decisions");
auditCmd
  .command('verify')
  .description('check the audit log\'s hash chain and MACs')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic audit verify')
  .action(async (opts, cmd) => act(() => import('./commands/usage.js'), 'auditVerify')(opts, cmd));
auditCmd
  .command('export')
  .description('print the audit log as JSON (default) or CSV')
  .option('--csv', 'CSV instead of JSON')
  .option('--since <date>', 'only records at or after DATE')
  .addOption(home())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic audit export --csv --since 2026-11-01 > audit.csv')
  .action(async (opts, cmd) => act(() => import('./commands/usage.js'), 'auditExport')(opts, cmd));

const server = program.command('server').description("the vendor's licence server (self-hosted): online activation, revocation, usage");
const database = () => new Option('--database <url>', 'postgres://... for PostgreSQL (several servers may share it); default: SQLite in the data directory').env('MLIC_DATABASE_URL');
server
  .command('init')
  .description('create the data directory (0700), bring the database schema up to date and print a first admin token, once')
  .requiredOption('--data <dir>', "the server's data directory")
  .addOption(database())
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic server init --data /var/lib/mlic\n  $ mlic server init --data /var/lib/mlic --database postgres://mlic@db.internal/mlic --json')
  .action(async (opts, cmd) => act(() => import('./commands/server.js'), 'init')(opts, cmd));
server
  .command('start')
  .description('serve the licence API (HTTPS with a certificate; plain HTTP on loopback only); a first start in an empty DIR initializes it')
  .requiredOption('--data <dir>', "the server's data directory")
  .addOption(database())
  .option('--listen <host:port>', 'address to listen on', '127.0.0.1:8787')
  .option('--tls-cert <file>', 'PEM certificate (chain) for HTTPS')
  .option('--tls-key <file>', 'PEM private key for HTTPS')
  .option('--insecure-http', 'allow plain HTTP on a non-loopback address')
  .option('--key <file>', 'vendor secret key to issue licences with (else MLIC_SECRET_KEY; passphrase from MLIC_PASSPHRASE)')
  .option('--passphrase-file <file>', 'passphrase for the secret key')
  .option('--rate-limit-key <n>', 'activations a minute per licence key (0: no limit)', '300')
  .option('--rate-limit-address <n>', 'activations, deactivations and usage reports a minute per client address (0: no limit)', '600')
  .option('--trust-proxy', 'take client addresses from X-Forwarded-For (only behind a proxy that sets it)')
  .option('--tpm-ca <dir>', "trusted TPM manufacturers' CA certificates: a TPM-attested request's endorsement key certificate must chain to one (else MLIC_TPM_CA)")
  .option('--require-tpm', 'refuse activation requests without TPM attestation (needs --tpm-ca)')
  .option('--pcr-policy <file>', 'PCR values a TPM-attested request must show (mlic license pcr-policy makes one)')
  .option('--max-request-age <duration>', "how old a TPM request's quote may be (default 7d)")
  .addOption(json())
  .addHelpText('after', '\nPrints the base URL on stdout when listening, then one JSON access-log line per request. SIGTERM stops it\ngracefully (requests in flight finish).\n\nExamples:\n  $ mlic server start --data /var/lib/mlic\n  $ mlic server start --data /var/lib/mlic --listen 0.0.0.0:443 --tls-cert cert.pem --tls-key key.pem')
  .action(async (opts, cmd) => act(() => import('./commands/server.js'), 'start')(opts, cmd));

const adminCmd = program.command('admin').description("the licence server's admin API (server and token from --server/--token or MLIC_SERVER/MLIC_ADMIN_TOKEN)");
const conn = (c: Command) => c.option('--server <url>', 'the licence server (else MLIC_SERVER)').option('--token <token>', 'admin token (else MLIC_ADMIN_TOKEN, which keeps it out of the process list)');
const entitlement = adminCmd.command('entitlement').description('what a customer bought, and its licence key');
conn(
  termsOptions(
    entitlement
      .command('create')
      .description('create an entitlement (the terms of mlic license issue, plus --max-hosts) and print its licence key, once')
      .requiredOption('--customer <name>', 'customer reference')
      .requiredOption('--model <name>', 'model name')
      .requiredOption('--max-hosts <n>', 'hosts that may hold it at once')
      .option('--floating-seats <n>', 'at most N seats in use at once across the fleet, each held by a lease from the server')
      .option('--seat-unit <unit>', 'with --floating-seats: host, gpu (each GPU the host lists) or process', 'host')
      .option('--lease <duration>', 'with --floating-seats: how long a lease lives unless renewed (e.g. 15m)', '15m'),
    "versions: a range ('^2', '>=2.1 <3')",
  ).option('--marked', 'each licence is for the bundles marked for it alone (mlic mark), so that a leak can be traced (mlic trace --server)'),
)
  .addOption(json())
  .addHelpText('after', "\nExamples:\n  $ export MLIC_SERVER=https://licences.acme.example MLIC_ADMIN_TOKEN=mlat_...\n  $ mlic admin entitlement create --customer globex --model resnet --versions '^2' --days 365 --max-hosts 8\n  $ mlic admin entitlement create --customer initech --model resnet --versions '^2' --days 365 --max-hosts 2 --marked")
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'entitlementCreate')(opts, cmd));
conn(entitlement.command('list').description('list entitlements (never their keys)').option('--customer <name>', 'only this customer\'s'))
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin entitlement list --customer globex --json')
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'entitlementList')(opts, cmd));
conn(entitlement.command('show').description('show one entitlement').argument('<id>', 'entitlement id (ent_...)'))
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin entitlement show ent_0123456789abcdef')
  .action(async (id, opts, cmd) => act(() => import('./commands/admin.js'), 'entitlementShow')(id, opts, cmd));

conn(adminCmd.command('hosts').description('the hosts activated under your entitlements').option('--entitlement <id>', 'only this entitlement\'s').option('--all', 'deactivated and revoked hosts too'))
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin hosts --entitlement ent_0123456789abcdef --json')
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'hosts')(opts, cmd));
conn(
  adminCmd
    .command('revoke')
    .description('revoke a licence, every licence of a host (and bar its key), or a whole entitlement; hosts refuse them once they have the new revocation list')
    .option('--entitlement <id>', 'ent_...')
    .option('--license <id>', 'a licence id (32 hex digits)')
    .option('--host <id>', 'host_...'),
)
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin revoke --host host_0123456789abcdef\n  $ mlic admin revoke --entitlement ent_0123456789abcdef')
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'revoke')(opts, cmd));
conn(adminCmd.command('deactivate').description("free a host's slot with the signed deactivation it wrote offline (mlic deactivate -o FILE)").argument('<file>', 'deactivation.json'))
  .addOption(json())
  .action(async (file, opts, cmd) => act(() => import('./commands/admin.js'), 'deactivate')(file, opts, cmd));

conn(
  adminCmd
    .command('usage')
    .description('usage totals per entitlement and month from the hosts\' signed reports, with every gap or rewind flagged; --upload posts report files first')
    .option('--entitlement <id>', 'only this entitlement\'s')
    .option('--period <month>', 'only this month (YYYY-MM)')
    .option('--upload <files...>', "report files a host sent you (oldest month first)"),
)
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin usage --period 2026-11\n  $ mlic admin usage --upload report-2026-10.json report-2026-11.json')
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'usage')(opts, cmd));
const tokenCmd = adminCmd.command('token').description('admin tokens for the admin API');
conn(tokenCmd.command('create').description('create an admin token and print it, once').requiredOption('--name <text>', 'what or who it is for'))
  .addOption(json())
  .addHelpText('after', "\nExamples:\n  $ mlic admin token create --name 'release pipeline'")
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'tokenCreate')(opts, cmd));
conn(tokenCmd.command('list').description('list admin tokens (ids and names; never the tokens)'))
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin token list --json')
  .action(async (opts, cmd) => act(() => import('./commands/admin.js'), 'tokenList')(opts, cmd));
conn(tokenCmd.command('revoke').description('revoke an admin token (never the last live one)').argument('<id>', 'token id (16 hex digits: the part after mlat_)'))
  .addOption(json())
  .addHelpText('after', '\nExamples:\n  $ mlic admin token revoke 0123456789abcdef')
  .action(async (id, opts, cmd) => act(() => import('./commands/admin.js'), 'tokenRevoke')(id, opts, cmd));

// A closed pipe (`mlic licenses | head -1`) ends the command quietly, as it would a shell tool.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    cleanupTempFilesSync();
    process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0);
  });
}

function onSignal(sig: NodeJS.Signals, code: number) {
  process.on(sig, () => {
    if (signalTakenOver(sig)) return;
    cleanupTempFilesSync();
    process.exit(code);
  });
}
onSignal('SIGINT', 130);
onSignal('SIGTERM', 143);
onSignal('SIGHUP', 129);

async function main(): Promise<number> {
  try {
    await program.parseAsync(process.argv);
    return commandStatus;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      // No command, or `mlic help <unknown>`: the help went to stderr; that is a usage error.
      if (e.code === 'commander.help' || e.code === 'commander.executeSubCommandAsync') return 2;
      return await printError(wantsJson, new MlicError('USAGE', e.message.replace(/^error: /, ''), { hint: 'run with --help for usage and examples' }));
    }
    return await printError(wantsJson, e);
  }
}

main().then(
  (code) => {
    cleanupTempFilesSync();
    process.exitCode = code;
  },
  async (e) => {
    cleanupTempFilesSync();
    process.exitCode = await printError(wantsJson, e);
  },
);
