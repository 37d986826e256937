// What a kubelet puts in a container's environment, for tests that load a rendered manifest's
// berth.yaml with the variables its pod would really have.
import assert from 'node:assert/strict';

export interface EnvEntry {
  name: string;
  value?: string;
  valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } };
}

/**
 * The environment a kubelet would give the container: plain values, downward-API fields and
 * Secret keys filled in with stand-ins, and `$(VAR)` references to earlier variables expanded.
 */
export function podEnv(c: { env?: EnvEntry[] }, fields: Record<string, string>, secrets: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    let v: string | undefined;
    if (e.value !== undefined) v = e.value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, n: string) => env[n] ?? m);
    else if (e.valueFrom?.fieldRef) v = fields[e.valueFrom.fieldRef.fieldPath];
    else if (e.valueFrom?.secretKeyRef) v = secrets[`${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`];
    assert.ok(v !== undefined, `${e.name} gets a value`);
    assert.doesNotMatch(v, /\$\(/, `${e.name}: every $(VAR) it names is defined before it`);
    env[e.name] = v;
  }
  delete env['BERTH_CONFIG'];
  return env;
}
