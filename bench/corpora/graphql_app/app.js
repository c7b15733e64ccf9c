// A small GraphQL API on GraphQL Yoga (search corpus): books and authors, a deprecated field, a slow report, a
// resolver that fails, a mutation and a subscription. Instrumented with GraphQL Yoga's Prometheus plugin (every metric
// it has, the per-resolver histogram too) and prom-client's default metrics, served on /metrics.
"use strict";
const http = require("node:http");
const { createYoga, createSchema, createPubSub } = require("graphql-yoga");
const { usePrometheus } = require("@graphql-yoga/plugin-prometheus");
const client = require("prom-client");

const port = Number(process.argv[2] || 4000);
client.collectDefaultMetrics();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const authors = [
  { id: "1", name: "Ursula K. Le Guin" },
  { id: "2", name: "Stanisław Lem" },
];
const books = [
  { id: "1", title: "The Dispossessed", authorId: "1", isbn: "978-0060512750" },
  { id: "2", title: "Solaris", authorId: "2", isbn: "978-0156027601" },
];
const pubsub = createPubSub();

const schema = createSchema({
  typeDefs: /* GraphQL */ `
    type Author {
      id: ID!
      name: String!
      books: [Book!]!
    }
    type Book {
      id: ID!
      title: String!
      author: Author!
      isbn: String @deprecated(reason: "Use identifiers.")
      identifiers: [String!]!
    }
    type Report {
      books: Int!
    }
    type Query {
      books: [Book!]!
      book(id: ID!): Book
      authors: [Author!]!
      report: Report!
      recommendations: [Book!]!
    }
    type Mutation {
      addBook(title: String!, authorId: ID!): Book!
    }
    type Subscription {
      bookAdded: Book!
    }
  `,
  resolvers: {
    Query: {
      books: () => books,
      book: (_, { id }) => books.find((b) => b.id === id) || null,
      authors: () => authors,
      // A report that takes about a second and a half.
      report: async () => {
        await sleep(1500);
        return { books: books.length };
      },
      // The recommendation service is down.
      recommendations: () => {
        throw new Error("recommendation service unavailable");
      },
    },
    Mutation: {
      addBook: (_, { title, authorId }) => {
        if (!authors.some((a) => a.id === authorId)) throw new Error(`no author ${authorId}`);
        const book = { id: String(books.length + 1), title, authorId, isbn: null };
        books.push(book);
        pubsub.publish("bookAdded", book);
        return book;
      },
    },
    Subscription: {
      bookAdded: { subscribe: () => pubsub.subscribe("bookAdded"), resolve: (book) => book },
    },
    Author: { books: (author) => books.filter((b) => b.authorId === author.id) },
    Book: {
      author: (book) => authors.find((a) => a.id === book.authorId),
      identifiers: (book) => (book.isbn ? [book.isbn] : []),
    },
  },
});

const yoga = createYoga({
  schema,
  graphiql: false,
  plugins: [
    usePrometheus({
      endpoint: "/metrics",
      metrics: { graphql_envelop_execute_resolver: true },
    }),
  ],
});

http.createServer(yoga).listen(port, "127.0.0.1");
