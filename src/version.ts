// dbsync's version: package.json's, read where the code runs (src/ under tsx, dist/ built).
import fs from "node:fs";
import path from "node:path";

export const VERSION: string = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8")).version;
