import type { Model } from "../model/normalize.js";
import type { Secrets } from "../model/secrets.js";
import type { FileSpec } from "../tree.js";
export function composeFiles(_model: Model, _secrets: Secrets): FileSpec[] { return []; }
