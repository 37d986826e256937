// Test infrastructure shared by unit, integration and e2e tests: free ports, child processes,
// temp dirs, a real Distribution, a private Redis, deterministic images, and the counting /
// fault-injecting proxy. Imports nothing from src/.
export * from './cleanup.js';
export * from './tmp.js';
export * from './ports.js';
export * from './proc.js';
export * from './registry.js';
export * from './redis.js';
export * from './images.js';
export * from './fault-proxy.js';
export * from './json-keys.js';
