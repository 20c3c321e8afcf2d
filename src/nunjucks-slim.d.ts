// nunjucks ships its runtime-only build (no compiler, no fs/path) without types.
declare module "nunjucks/browser/nunjucks-slim.js" {
  import type nunjucks from "nunjucks";
  const slim: Pick<typeof nunjucks, "Environment" | "PrecompiledLoader">;
  export default slim;
}
