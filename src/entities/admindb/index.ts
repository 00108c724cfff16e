// The entities of admindb, in one list for its DataSource.
import { Document } from "./Document";
import { KnowledgeBase } from "./KnowledgeBase";
import { LangchainCollection } from "./LangchainCollection";
import { LangchainEmbedding } from "./LangchainEmbedding";
import { LoginLog } from "./LoginLog";
import { SystemLog } from "./SystemLog";
import { SystemSetting } from "./SystemSetting";

export { Document, KnowledgeBase, LangchainCollection, LangchainEmbedding, LoginLog, SystemLog, SystemSetting };
export const entities = [SystemLog, LoginLog, SystemSetting, KnowledgeBase, Document, LangchainCollection, LangchainEmbedding];
