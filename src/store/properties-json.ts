import type { MessageProperties } from "../core/index.js";

/** MessageProperties as stored in a JSON column: short keys, binary as base64. */
export interface PropertiesJson {
  f?: 0 | 1;
  ct?: string;
  rt?: string;
  cd?: string;
  up?: [string, string][];
}

export function propertiesToJson(p: MessageProperties): PropertiesJson {
  const out: PropertiesJson = {};
  if (p.payloadFormat !== undefined) out.f = p.payloadFormat;
  if (p.contentType !== undefined) out.ct = p.contentType;
  if (p.responseTopic !== undefined) out.rt = p.responseTopic;
  if (p.correlationData !== undefined) out.cd = Buffer.from(p.correlationData).toString("base64");
  if (p.userProperties !== undefined) out.up = p.userProperties.map(([k, v]) => [k, v]);
  return out;
}

export function propertiesFromJson(m: PropertiesJson): MessageProperties {
  return {
    ...(m.f !== undefined ? { payloadFormat: m.f } : {}),
    ...(m.ct !== undefined ? { contentType: m.ct } : {}),
    ...(m.rt !== undefined ? { responseTopic: m.rt } : {}),
    ...(m.cd !== undefined ? { correlationData: Buffer.from(m.cd, "base64") } : {}),
    ...(m.up !== undefined ? { userProperties: m.up } : {}),
  };
}
