// Benchmark peer: a cdk8s app that synthesizes as many files as the single-node tree has
// (one ConfigMap chart per file), timed as `cdk8s synth`.
const { App, Chart, ApiObject } = require("cdk8s");
const count = Number(process.env.FILES ?? 25);
const app = new App();
for (let i = 0; i < count; i++) {
  const chart = new Chart(app, `file${i}`);
  new ApiObject(chart, "config", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: `file-${i}` }, data: { content: `line ${i}\n`.repeat(40) } });
}
app.synth();
