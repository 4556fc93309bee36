import {
  ALLOW_ALL,
  type Authenticator,
  type AuthResult,
  DEFAULT_ACCOUNT,
  sourceAddress,
} from "../core/index.js";
import type { ConnectOptions } from "./connection-state.js";

/** How a NATS client's CONNECT is judged: the same users and permissions as MQTT's. */
export interface NatsAuth {
  /** INFO's `auth_required`: anonymous clients are refused. */
  readonly required: boolean;
  check(client: ConnectOptions, remote: string): AuthResult | Promise<AuthResult>;
}

/** No users, anonymous allowed, every subject open (tests, and nothing configured). */
export const OPEN_NATS_AUTH: NatsAuth = {
  required: false,
  check: () => ({ ok: true, user: undefined, permissions: ALLOW_ALL, account: DEFAULT_ACCOUNT }),
};

/**
 * The shared authenticator as NATS clients meet it: `auth_token` against
 * `authorization.token`, `user`/`pass` against `authorization.users`, otherwise anonymous
 * under `nats.allow_anonymous`. As for MQTT, credentials mean nothing where none are
 * configured. `%c` in permissions is the client's CONNECT `name`.
 */
export function natsAuth(authenticator: Authenticator, allowAnonymous: boolean): NatsAuth {
  return {
    required: !allowAnonymous,
    check: (client, remote) => {
      const address = sourceAddress(remote);
      const name = client.name ?? "";
      if (client.authToken !== undefined && authenticator.hasToken) {
        return authenticator.token(client.authToken, name, address);
      }
      if (client.user !== undefined && authenticator.hasUsers) {
        return authenticator.user(client.user, Buffer.from(client.pass ?? ""), name, address);
      }
      return authenticator.anonymous(name, {
        allowed: allowAnonymous,
        key: "nats.allow_anonymous",
      });
    },
  };
}
