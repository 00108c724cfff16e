// The authdb DataSource, for the plain TypeORM CLI:
//   npx typeorm-ts-node-commonjs migration:show -d src/data-sources/authdb.ts
import { dataSourceFromEnv } from "./from-env";

export default dataSourceFromEnv("authdb");
