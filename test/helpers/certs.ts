// Throwaway certificates made with openssl for TLS tests (a CA, a server certificate for
// 127.0.0.1, client certificates from the CA and from a stranger CA).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { runToCompletion } from "./procs.js";

async function openssl(dir: string, args: string[]): Promise<void> {
  const r = await runToCompletion("openssl", args, { cwd: dir, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr}`);
}

/** A throwaway self-signed CA: `<name>.pem` and `<name>.key`. */
async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    ...["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`],
    ...["-out", `${name}.pem`, "-days", "1", "-subj", `/CN=leafgate-test-${name}`],
  ]);
}

/** A key and a certificate signed by CA `ca`: `<name>.pem` and `<name>.key`. */
async function makeCert(
  dir: string,
  name: string,
  ca: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await openssl(dir, [
    ...["req", "-newkey", "rsa:2048", "-nodes", "-keyout", `${name}.key`],
    ...["-out", `${name}.csr`, "-subj", subject],
  ]);
  writeFileSync(join(dir, `${name}.ext`), `${extensions}\n`);
  await openssl(dir, [
    ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`],
    ...["-CAcreateserial", "-out", `${name}.pem`, "-days", "1", "-extfile", `${name}.ext`],
  ]);
}

/** A throwaway CA and a server certificate for 127.0.0.1. */
export async function makeCerts(dir: string): Promise<void> {
  await makeCa(dir, "ca");
  await makeCert(dir, "server", "ca", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost");
}

/**
 * Client certificates: `client` signed by the listener's CA, `stranger` by another CA
 * (`other-ca`) that the listener does not trust.
 */
export async function makeClientCerts(dir: string): Promise<void> {
  await makeCert(dir, "client", "ca", "/CN=sensor-1", "extendedKeyUsage=clientAuth");
  await makeCa(dir, "other-ca");
  await makeCert(dir, "stranger", "other-ca", "/CN=sensor-1", "extendedKeyUsage=clientAuth");
}
