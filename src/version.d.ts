/** Replaced at build time (tsup, vitest) with the package.json version. */
declare const __VERSION__: string;
