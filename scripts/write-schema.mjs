#!/usr/bin/env node
// Writes dist/schema.json (shipped as novacloud-render/schema.json) from the built library, so
// the file editors validate against is generated from the zod schema, never written by hand.
import { writeFileSync } from "node:fs";
import { modelJsonSchema } from "../dist/index.js";

writeFileSync(new URL("../dist/schema.json", import.meta.url), `${JSON.stringify(modelJsonSchema(), null, 2)}\n`);
