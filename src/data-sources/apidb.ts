// The apidb DataSource, for the plain TypeORM CLI:
//   npx typeorm-ts-node-commonjs migration:show -d src/data-sources/apidb.ts
import { dataSourceFromEnv } from "./from-env";

export default dataSourceFromEnv("apidb");
