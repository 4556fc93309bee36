import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  ConfigError,
  formatConfig,
  insecureChoices,
  type LeafgateConfig,
  loadConfig,
  secretRedactor,
  secretsOf,
} from "./config/index.js";
import { errorMessage, LeafgateError, type Logger } from "./core/index.js";
import { Gateway, STOP_DEADLINE_MS } from "./gateway.js";
import { hashPassword } from "./mqtt/index.js";
import { createLogger } from "./observe/index.js";
import { ProfileError, resolveProfile } from "./serial/index.js";
import { sqliteVersion } from "./store/index.js";

declare const LEAFGATE_VERSION: string | undefined;

/**
 * Masks secrets in what this process writes to stderr itself (errors that end it). Until
 * a configuration is loaded it masks only URL user info and nkey seeds; then its secrets too.
 */
let scrub = secretRedactor([]);

/** Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration. */
const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

const HELP: Record<string, string> = {
  main: `leafgate - edge gateway: MQTT in, SQLite store-and-forward, NATS hub out

Usage: leafgate <command> [options]

Commands:
  run       start the gateway
  check     validate a configuration and print the effective settings
  version   print the version
  sim       simulate a serial device on a pty pair (demos, tests)
  passwd    print a password hash for authorization.users
  status    summarise a running gateway; exits 1 when it is not ready
  hub       check the hub's stream for this gateway, or create it

Run 'leafgate <command> --help' for a command's options.
`,
  run: `Usage: leafgate run [-c FILE]

Starts the gateway. Without -c it runs on the built-in defaults: MQTT on
127.0.0.1:1883, data in ./data, hub nats://127.0.0.1:4222. LEAFGATE_* environment
variables override any setting (LEAFGATE_UPSTREAM_SERVERS=nats://hub:4222).
SIGINT/SIGTERM stop it gracefully; a second signal exits at once.

Options:
  -c, --config FILE   YAML configuration file (or LEAFGATE_CONFIG)
  -h, --help          show this help
`,
  check: `Usage: leafgate check [-c FILE]

Validates the configuration (file, defaults and LEAFGATE_* overrides) and the
device profile of every serial port, and prints the effective settings with secrets
masked; insecure choices are warned about on standard error. Exits 2 when anything
is invalid.

Options:
  -c, --config FILE   YAML configuration file (or LEAFGATE_CONFIG)
  -h, --help          show this help
`,
  sim: `Usage: leafgate sim <profile> [--link PATH] [--rate N]

Plays a device of a shipped profile (env-sensor, pms5003, gps-nmea, weather-csv,
energy-meter) on a pty pair made with socat: configure a serial port with the
printed device path and this profile. Every one but weather-csv also answers its
profile's commands (requests on devices.<device>.cmd.<name>).

Options:
  --link PATH   device path to create (default ./leafgate-<profile>)
  --rate N      frames per second (default 1)
  -h, --help    show this help
`,
  passwd: `Usage: leafgate passwd < password-file
       echo -n 's3cret' | leafgate passwd

Reads a password from standard input (one line) and prints its scrypt hash, for
the password of a user under authorization.users. The password itself is never
stored.
`,
  status: `Usage: leafgate status [--url URL] [--token TOKEN] [--json] [-c FILE]

Asks a running gateway for /status, /readyz and /metrics and prints a summary:
readiness and why not, uplink, backlog per class, clients, serial devices, drops.
Exit codes: 0 ready, 1 not ready, 2 bad usage, 3 no answer (not running, wrong
URL or token). See docs/status.md.

Options:
  --url URL           the gateway's HTTP endpoint (default: from -c's http.host and
                      http.port, else http://127.0.0.1:8222)
  --token TOKEN       bearer token for http.token (or LEAFGATE_HTTP_TOKEN, or -c)
  --json              print {url, ready, status, drops} as JSON instead
  -c, --config FILE   the gateway's YAML configuration
  -h, --help          show this help
`,
  hub: `Usage: leafgate hub check [-c FILE] [--account NAME]
       leafgate hub create-stream [-c FILE] [--account NAME] [--name NAME]
                  [--replicas N] [--max-age D] [--max-bytes S] [--yes]

check: connects to the hub as the gateway would (servers, credentials, TLS) and
reports, per account (default: every one), the stream that captures
<prefix>.>, its settings, and a verdict on each check: it captures every
exported subject, its duplicate window is longer than upstream.ack_timeout,
discard policy, limits against the gateway's buffer. Exit 0 all good, 1 a
problem (each with its fix), 3 the hub unreachable.

create-stream: prints the stream it would create (upstream.stream, else
EDGE_<GATEWAY>[_<ACCOUNT>]; subjects <prefix>.>, file storage, discard old,
duplicate window 2m or twice upstream.ack_timeout), and creates it only with
--yes (without: exit 2). An existing stream is never changed: exit 0 if it
captures the prefix, 1 otherwise. docs/hub.md.

Options:
  -c, --config FILE   YAML configuration file (or LEAFGATE_CONFIG)
  --account NAME      only this account (create-stream: needed with accounts)
  --name NAME         the stream's name (create-stream)
  --replicas N        replicas, 1 to 5 (default 1)
  --max-age D         oldest message kept, e.g. 7d (default unlimited)
  --max-bytes S       size kept, e.g. 10GB (default unlimited)
  --yes               create it (create-stream)
  -h, --help          show this help
`,
  version: `Usage: leafgate version

Prints the versions of leafgate, Node and SQLite, and the platform. It loads the
SQLite addon, so it fails when the addon does not fit this Node or machine.
`,
};

function version(): string {
  if (typeof LEAFGATE_VERSION === "string") return LEAFGATE_VERSION;
  const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  return pkg.version as string;
}

function parse(args: string[]): {
  config?: string;
  help: boolean;
  link?: string;
  rate?: string;
  positionals: string[];
} {
  const { values, positionals } = parseArgs({
    args,
    options: {
      config: { type: "string", short: "c" },
      help: { type: "boolean", short: "h", default: false },
      link: { type: "string" },
      rate: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  return {
    config: values.config,
    help: values.help ?? false,
    link: values.link,
    rate: values.rate,
    positionals,
  };
}

/** A Modbus RTU slave (the energy meter) answering the gateway's polls until a signal. */
async function simModbus(link: string | undefined): Promise<number> {
  const { ModbusSlaveSimulator } = await loadSimulators();
  const devicePath = resolve(link ?? "leafgate-energy-meter");
  const slave = new ModbusSlaveSimulator({ devicePath, simPath: `${devicePath}.sim` });
  await slave.open();
  process.stdout.write(
    `simulating energy-meter (Modbus RTU slave 1) on ${devicePath}\n` +
      `  serial: { ports: [ { path: ${devicePath}, profile: energy-meter, device: meter-1 } ] }\n` +
      "Ctrl-C stops.\n",
  );
  await new Promise<void>((done) => {
    process.once("SIGINT", () => done());
    process.once("SIGTERM", () => done());
  });
  await slave.close();
  return 0;
}

async function passwd(): Promise<number> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const password = Buffer.concat(chunks).toString("utf8").split(/\r?\n/)[0] ?? "";
  if (password.length === 0) {
    process.stderr.write("leafgate: passwd: no password on standard input\n");
    return EXIT_USAGE;
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}

/**
 * `leafgate check`: the config, then every port's profile, framing and decoder; the
 * insecure choices `run` would warn about go to stderr (all but running as root: the
 * user that checks is not necessarily the one that runs).
 */
function check(file: string | undefined): string {
  const config = load(file);
  for (const port of config.serial.ports) {
    // Loading checks the profile, its framer and decoder, or its Modbus register map.
    resolveProfile(port.profile, config.serial.profiles_dir);
  }
  const configFile = configFileOf(file);
  const context = configFile === undefined ? {} : { configFile };
  for (const w of insecureChoices(config, context)) {
    process.stderr.write(`leafgate: warning: ${w.message} [${w.code}]\n`);
  }
  return formatConfig(config);
}

/** The config file in use, absolute, if any. */
function configFileOf(file: string | undefined): string | undefined {
  const named = file ?? process.env.LEAFGATE_CONFIG;
  return named === undefined || named === "" ? undefined : resolve(named);
}

// The simulators (and child_process, tty) load only for `sim`: `run` does not pay for them.
const loadSimulators = () => import("../firmware-sim/index.js");

async function sim(options: {
  positionals: string[];
  link?: string;
  rate?: string;
}): Promise<number> {
  const name = options.positionals[0];
  if (name === "energy-meter") return simModbus(options.link);
  const { MODELS, Simulator } = await loadSimulators();
  const model = name === undefined ? undefined : MODELS[name];
  if (model === undefined) {
    process.stderr.write(
      `leafgate: sim needs a profile: ${[...Object.keys(MODELS), "energy-meter"].join(", ")}\n\n${HELP.sim}`,
    );
    return EXIT_USAGE;
  }
  const rate = Number(options.rate ?? 1);
  if (!(rate > 0 && rate <= 10_000)) {
    process.stderr.write(
      `leafgate: --rate: expected a number from 0 to 10000, got "${options.rate}"\n`,
    );
    return EXIT_USAGE;
  }
  const devicePath = resolve(options.link ?? `leafgate-${model.name}`);
  const simulator = new Simulator(model, devicePath, `${devicePath}.sim`);
  await simulator.open();
  process.stdout.write(
    `simulating ${model.name} at ${rate} frames/s on ${devicePath}\n` +
      `  serial: { ports: [ { path: ${devicePath}, profile: ${model.name}, device: sim-1 } ] }\n` +
      "Ctrl-C stops.\n",
  );
  const stop = new Promise<void>((done) => {
    process.once("SIGINT", () => done());
    process.once("SIGTERM", () => done());
  });
  let running = true;
  const loop = (async () => {
    while (running) await simulator.run(rate, Math.max(1, Math.ceil(rate)));
  })();
  await stop;
  running = false;
  await simulator.close();
  await loop.catch(() => {});
  return 0;
}

function load(file: string | undefined): LeafgateConfig {
  const config = loadConfig({
    file: file ?? process.env.LEAFGATE_CONFIG,
    env: process.env,
    hostname: hostname(),
  });
  scrub = secretRedactor(secretsOf(config));
  return config;
}

async function run(file: string | undefined): Promise<number> {
  const config = load(file);
  const log = createLogger({ level: config.log.level, scrub });
  log.info(
    { version: version(), gateway: config.gateway.id, config: file ?? "built-in defaults" },
    "leafgate starting",
  );
  const configFile = configFileOf(file);
  const gateway = new Gateway({
    config,
    log,
    version: version(),
    ...(configFile ? { configFile } : {}),
  });
  const exitCode = installShutdown(gateway, log);
  const startedAt = performance.now();
  try {
    await gateway.start();
  } catch (err) {
    log.error({ err }, `cannot start: ${errorMessage(err)}`);
    return EXIT_FAILURE;
  }
  log.info({ startupMs: Math.round(performance.now() - startedAt) }, "ready");
  return exitCode;
}

/**
 * One handler for SIGINT/SIGTERM and for errors nobody caught: stop gracefully within
 * the deadline, then exit. A second signal exits at once with 1.
 */
function installShutdown(gateway: Gateway, log: Logger): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const shutdown = (why: string, code: number): void => {
      if (stopping) {
        log.warn({ why }, "second signal: exiting now");
        process.exit(EXIT_FAILURE);
      }
      stopping = true;
      log.info({ why }, "stopping");
      const force = setTimeout(() => {
        log.error({ deadlineMs: STOP_DEADLINE_MS + 1000 }, "shutdown deadline passed; exiting");
        process.exit(EXIT_FAILURE);
      }, STOP_DEADLINE_MS + 1000);
      force.unref();
      gateway
        .stop()
        .catch((err: unknown) => log.error({ err }, "shutdown failed"))
        .finally(() => {
          clearTimeout(force);
          resolve(code);
        });
    };
    process.on("SIGINT", () => shutdown("SIGINT", 0));
    process.on("SIGTERM", () => shutdown("SIGTERM", 0));
    process.on("uncaughtException", (err) => {
      log.error({ err }, "uncaught exception");
      shutdown("uncaughtException", EXIT_FAILURE);
    });
    process.on("unhandledRejection", (err) => {
      log.error({ err }, "unhandled rejection");
      shutdown("unhandledRejection", EXIT_FAILURE);
    });
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "-h" || command === "--help" || command === "help") {
    process.stdout.write(HELP.main!);
    return command === undefined ? EXIT_USAGE : 0;
  }
  const help = HELP[command];
  if (help === undefined || command === "main") {
    process.stderr.write(`leafgate: unknown command "${command}"\n\n${HELP.main}`);
    return EXIT_USAGE;
  }
  if (command === "status") {
    const { statusCommand } = await import("./observe/status-command.js");
    const out = (text: string) => process.stdout.write(text);
    const err = (text: string) => process.stderr.write(text);
    return statusCommand(rest, help, { loadConfig: load, env: process.env, out, err });
  }
  // `hub` has options of its own, and loads (with the JetStream client's manager) only for it.
  if (command === "hub") return (await import("./hub-cli.js")).hub(rest, load, help);
  const options = parse(rest);
  if (options.help) {
    process.stdout.write(help);
    return 0;
  }
  switch (command) {
    case "version":
      process.stdout.write(
        `leafgate ${version()} (node ${process.version}, sqlite ${sqliteVersion()}, ${process.platform}-${process.arch})\n`,
      );
      return 0;
    case "check":
      process.stdout.write(check(options.config));
      return 0;
    case "sim":
      return sim(options);
    case "passwd":
      return passwd();
    default:
      return run(options.config);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof ProfileError) {
      process.stderr.write(scrub(`leafgate: ${err.message}\n`));
      process.exitCode = EXIT_USAGE;
    } else if (
      err instanceof LeafgateError ||
      (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      process.stderr.write(scrub(`leafgate: ${errorMessage(err)}\n`));
      process.exitCode = err instanceof LeafgateError ? EXIT_FAILURE : EXIT_USAGE;
    } else {
      const text = (err as Error)?.stack ?? String(err);
      process.stderr.write(scrub(`leafgate: unexpected error: ${text}\n`));
      process.exitCode = EXIT_FAILURE;
    }
  },
);
