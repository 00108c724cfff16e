// The admindb DataSource, for the plain TypeORM CLI:
//   npx typeorm-ts-node-commonjs migration:show -d src/data-sources/admindb.ts
import { dataSourceFromEnv } from "./from-env";

export default dataSourceFromEnv("admindb");
