import { readFileSync } from "node:fs";
import { errorMessage, LeafgateError } from "./errors.js";

/** A listener's TLS files, as the config names them. */
export interface TlsFiles {
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
}

/**
 * Reads a listener's certificate and key (and CA: clients must then present a
 * certificate it signed) once, at start, as `tls.createServer` options. A file that
 * cannot be read is `LG_ERR_<PART>_TLS`, naming the file.
 */
export function readTlsFiles(tls: TlsFiles, part: "mqtt" | "nats") {
  const read = (what: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new LeafgateError(
        `LG_ERR_${part.toUpperCase()}_TLS`,
        `cannot read the ${part.toUpperCase()} listener's TLS ${what} ${file}: ${errorMessage(err)}`,
        { cause: err },
      );
    }
  };
  const ca = read("ca", tls.ca);
  return {
    cert: read("cert", tls.cert),
    key: read("key", tls.key),
    ...(ca === undefined ? {} : { ca, requestCert: true, rejectUnauthorized: true }),
  };
}
