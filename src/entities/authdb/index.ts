// The entities of authdb, in one list for its DataSource.
import { User } from "./User";

export { User };
export const entities = [User];
