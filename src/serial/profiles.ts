import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type DeviceProfile, loadProfile, ProfileError } from "./profile.js";

/**
 * Where the shipped profiles are: `devices/` beside the bundle (dist/devices, copied by
 * the build) or at the repository root when running from source.
 */
export function builtInProfileDirs(): string[] {
  return [
    fileURLToPath(new URL("./devices/", import.meta.url)),
    fileURLToPath(new URL("../../devices/", import.meta.url)),
  ].filter((dir) => existsSync(dir));
}

/**
 * Finds and loads the profile a port names: a path to a `.yaml` file, or a name looked
 * up as `<name>.yaml` in `profilesDir` first and then among the built-in profiles.
 */
export function resolveProfile(nameOrPath: string, profilesDir: string | null): DeviceProfile {
  if (nameOrPath.endsWith(".yaml") || nameOrPath.endsWith(".yml") || nameOrPath.includes("/")) {
    return loadProfile(isAbsolute(nameOrPath) ? nameOrPath : resolve(nameOrPath));
  }
  const dirs = [...(profilesDir ? [profilesDir] : []), ...builtInProfileDirs()];
  for (const dir of dirs) {
    const file = join(dir, `${nameOrPath}.yaml`);
    if (existsSync(file)) return loadProfile(file);
  }
  throw new ProfileError(nameOrPath, [
    `no profile named "${nameOrPath}" (looked in ${dirs.join(", ") || "no profile directory"})`,
  ]);
}
