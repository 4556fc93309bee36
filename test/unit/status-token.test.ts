// http.token as a secret: validated, masked in `leafgate check`'s output and in log lines,
// and named by the warning for a non-loopback endpoint (the token crosses in clear).
import { describe, expect, it } from "vitest";
import {
  formatConfig,
  insecureChoices,
  loadConfig,
  secretRedactor,
  secretsOf,
} from "../../src/config/index.js";

const TOKEN = "0123456789abcdef-token";
const load = (http: Record<string, string>) =>
  loadConfig({
    env: Object.fromEntries(Object.entries(http).map(([k, v]) => [`LEAFGATE_HTTP_${k}`, v])),
    hostname: "h",
  });

describe("http.token", () => {
  it("is unset by default", () => {
    expect(load({}).http.token).toBeUndefined();
  });

  it("is masked in the effective config and in any text the gateway prints", () => {
    const config = load({ TOKEN });
    expect(config.http.token).toBe(TOKEN);
    const shown = formatConfig(config);
    expect(shown).toContain('token: "***"');
    expect(shown).not.toContain(TOKEN);
    expect(secretsOf(config)).toContain(TOKEN);
    expect(secretRedactor(secretsOf(config))(`{"msg":"x ${TOKEN} y"}`)).toBe('{"msg":"x *** y"}');
  });

  it("needs 16 characters, and the error does not show it", () => {
    expect(() => load({ TOKEN: "short-secret" })).toThrow(
      /LEAFGATE_HTTP_TOKEN.*a token of at least 16 characters \(e\.g\. openssl rand -hex 16\)/s,
    );
    expect(() => load({ TOKEN: "short-secret" })).not.toThrow(/short-secret/);
  });

  it("changes the exposed-endpoint warning: the token crosses the network in clear", () => {
    const warnings = insecureChoices(load({ HOST: "0.0.0.0", TOKEN }));
    expect(warnings.map((w) => [w.code, w.message])).toEqual([
      [
        "LG_WARN_HTTP_EXPOSED",
        "HTTP monitoring 0.0.0.0:8222 is not loopback and has no TLS: its bearer token (http.token) and what it serves cross the network in clear, for anyone on the path to read: set http.host: 127.0.0.1 and scrape through a tunnel or a TLS proxy",
      ],
    ]);
  });
});
