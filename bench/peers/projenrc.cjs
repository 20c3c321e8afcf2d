// Benchmark peer: a projen project that synthesizes as many text files as the single-node tree
// has, timed as `node .projenrc.js` (what `projen` runs).
const { Project, TextFile } = require("projen");
const count = Number(process.env.FILES ?? 25);
const project = new Project({ name: "peer", outdir: process.env.OUTDIR });
for (let i = 0; i < count; i++) new TextFile(project, `files/file${i}.conf`, { lines: Array.from({ length: 40 }, (_, j) => `line ${i}.${j}`) });
project.synth();
